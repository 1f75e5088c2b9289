"""In-loop lm-eval split over the data-parallel ranks: each scores its share of the documents, rank 0 aggregates.

lm-eval does the split itself for a model it launched (`task.build_all_requests(rank, world_size)` gives each
rank every world_size-th document, request counts are padded to the largest rank's, and the per-document
metrics are gathered to rank 0, which aggregates them): the numbers are those of one process scoring
everything. For a model object it assumes one process; `DataParallelLM` gives it this rank's data-parallel
coordinates and routes its three collectives (`all_gather`, `gather_object`, `barrier`) through the
data-parallel group, so tensor-parallel peers — which hold slices of the same weights — score the same
documents together and are not counted as extra ranks.

When the weights are FSDP-sharded over the data-parallel ranks, every forward is a collective (it gathers the
weights), so every rank must run as many forwards as the others, and how many a rank runs depends on its
documents (requests are batched by context and by token budget). Before each forward the ranks agree that
one is coming (a one-number all-reduce); a rank that has run out of work then joins the others' remaining
forwards with a one-token dummy one until none is left (`lockstep`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pretrain.evaluation.live import live_lm_class


@dataclass(frozen=True)
class DataParallelEval:
    """This rank's place among the ranks that split an evaluation."""

    rank: int  # data-parallel rank
    world: int  # data-parallel ranks
    group: object | None = None  # their process group (None: the default group)
    lockstep: bool = False  # forwards are collectives over these ranks (FSDP shards): run as many on each


@functools.cache
def data_parallel_lm_class():
    """`LiveHFLM` (evaluation/live.py) scoring this rank's share of the requests; defined on first use."""
    import torch
    import torch.distributed as dist

    class DataParallelLM(live_lm_class()):
        def __init__(self, *args, data: DataParallelEval, **kwargs):
            super().__init__(*args, **kwargs)
            self.data = data
            self._rank, self._world_size = data.rank, data.world  # HFLM sets 0 / 1 for a model object
            if data.lockstep:
                self.before_forward = self._forward_coming

        # ---------------------------------------------------------------- lm-eval's collectives, on our group
        def all_gather(self, tensor):
            out = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(out, tensor, group=self.data.group)
            return torch.stack(out)

        def gather_object(self, obj, dst=0):
            gathered = [None] * self.world_size if self.rank == dst else None
            target = dist.get_global_rank(self.data.group, dst) if self.data.group is not None else dst
            dist.gather_object(obj, gathered, dst=target, group=self.data.group)
            return gathered

        def barrier(self):
            dist.barrier(group=self.data.group)

        # ---------------------------------------------------------------- as many forwards on every rank
        def loglikelihood(self, requests, disable_tqdm=False):
            answers = super().loglikelihood(requests, disable_tqdm)
            self._until_no_forward_is_left()
            return answers

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            answers = super().loglikelihood_rolling(requests, disable_tqdm)
            self._until_no_forward_is_left()
            return answers

        def _others_forward(self, mine: int) -> bool:
            flag = torch.tensor(mine, device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.data.group)
            return bool(flag.item())

        def _forward_coming(self) -> None:
            self._others_forward(1)

        def _until_no_forward_is_left(self) -> None:
            if not self.data.lockstep:
                return
            dummy = torch.zeros((1, 1), dtype=torch.long, device=self.device)
            while self._others_forward(0):
                with torch.no_grad():
                    self.model(dummy, use_cache=False)

    return DataParallelLM
