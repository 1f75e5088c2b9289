"""Loglikelihood scoring that runs each distinct context once: lm-eval's requests, fewer model tokens.

lm-eval scores every (context, continuation) request as its own row, so a 4-way multiple-choice item runs
its context through the model four times, and the LM head and a full-vocabulary log-softmax run at every
position although only the continuation's positions are read. Here the requests that share a context
become one row: the context once, then each continuation's tokens as a branch that attends to the context
and to itself only (a 4-D attention mask; position ids restart after the context for every branch), and
the head runs only at the positions whose next token is scored (`logits_to_keep`). Each request gets the
same log-probability and exact-match flag as lm-eval's row would (up to float summation order) — the
caller checks that on the first requests and otherwise falls back to lm-eval's own path.

On the tiny recipe's stdlib cloze (4 choices, ~60-token contexts, ~20-token lines) the model sees 14k
tokens instead of 32k and the head runs at 8k positions instead of 32k.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Request = tuple[tuple[str, str], list[int], list[int]]  # lm-eval's (strings, context ids, continuation ids)

# attention implementations whose 4-D mask format is known: sdpa takes a boolean "may attend" mask, eager
# adds the mask to the scores; flash-attention kernels ignore custom masks, so those models are not sped up
MASKED_ATTENTION = ("sdpa", "eager")
# scored positions per step of the log-softmax: their fp32 logits stay in the CPU's cache (8 MB at 4,096 vocab)
LOGPROB_CHUNK_ROWS = 512


@dataclass
class _Row:
    """One model row: a shared context followed by branches, one per request continuation."""

    context: list[int]
    tokens: list[int] = field(
        default_factory=list
    )  # context, then each branch's continuation minus its last id
    positions: list[int] = field(default_factory=list)
    branch_of: list[int] = field(default_factory=list)  # -1 for the context, else the branch index
    # per request: (request index, the row positions whose logits predict its tokens, its continuation ids)
    scored: list[tuple[int, list[int], list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = list(self.context)
        self.positions = list(range(len(self.context)))
        self.branch_of = [-1] * len(self.context)

    def add(self, index: int, continuation: list[int]) -> None:
        branch, start, c = len(self.scored), len(self.tokens), len(self.context)
        body = continuation[:-1]
        self.tokens += body
        self.positions += range(c, c + len(body))
        self.branch_of += [branch] * len(body)
        # the context's last position predicts the first continuation id, the branch predicts the rest
        self.scored.append((index, [c - 1, *range(start, start + len(body))], continuation))


def plan_rows(requests: list[Request], max_length: int) -> tuple[list[_Row], list[int]]:
    """Group requests by their (left-truncated) context into rows of at most `max_length` tokens, except
    that a single request always fits. Returns (rows, indices of requests this path cannot take)."""
    by_context: dict[tuple[int, ...], list[_Row]] = {}
    rest = []
    for index, (_, context, continuation) in enumerate(requests):
        n = len(continuation)
        whole = (context + continuation)[-(max_length + 1) :]  # lm-eval's left truncation
        if not context or n == 0 or n > max_length or len(whole) <= n:
            rest.append(index)
            continue
        key = tuple(whole[:-n])
        rows = by_context.setdefault(key, [])
        if not rows or (rows[-1].scored and len(rows[-1].tokens) + n - 1 > max_length):
            rows.append(_Row(list(key)))
        rows[-1].add(index, continuation)
    return [row for rows in by_context.values() for row in rows], rest


def _attention_mask(rows: list[_Row], length: int, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 1, length, length): a context position sees earlier context; a branch position sees the whole
    context and its own branch up to itself; padding sees only itself (a row with no key gives NaN)."""
    allowed = torch.zeros(len(rows), 1, length, length, dtype=torch.bool)
    causal = torch.ones(length, length, dtype=torch.bool).tril_()
    for b, row in enumerate(rows):
        n = len(row.tokens)
        branch = torch.tensor(row.branch_of)
        same = (branch[:, None] == branch[None, :]) | (branch[None, :] == -1)
        allowed[b, 0, :n, :n] = same & causal[:n, :n]
        pad = torch.arange(n, length)
        allowed[b, 0, pad, pad] = True
    if implementation == "sdpa":
        return allowed
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def _batches(rows: list[_Row], token_budget: int) -> list[list[_Row]]:
    """Rows longest first, as many per batch as fit `token_budget` padded tokens."""
    ordered = sorted(rows, key=lambda r: -len(r.tokens))
    batches: list[list[_Row]] = []
    for row in ordered:
        if batches and len(batches[-1][0].tokens) * (len(batches[-1]) + 1) <= token_budget:
            batches[-1].append(row)
        else:
            batches.append([row])
    return batches


def _target_logprobs(
    logits: torch.Tensor, picks: torch.Tensor, target: torch.Tensor, chunk: int = LOGPROB_CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-softmax of logits[picks[i]] at target[i], whether target[i] is that row's argmax), in fp32.

    Chunk by chunk: the whole (scored tokens, vocab) array and logsumexp's temporaries of its size would be
    fresh allocations the size of the logits, and on a CPU their page faults and cache misses cost more than
    the head's matmul (on the tiny recipe's rolling bits/byte: 16k tokens x 4,096 vocabulary, 67 MB)."""
    logprob = torch.empty(len(picks), dtype=torch.float32, device=logits.device)
    greedy = torch.empty(len(picks), dtype=torch.bool, device=logits.device)
    for start in range(0, len(picks), chunk):
        end = min(start + chunk, len(picks))
        rows = logits[picks[start:end]].float()  # (chunk, vocab)
        tgt = target[start:end]
        greedy[start:end] = rows.argmax(dim=-1) == tgt
        logprob[start:end] = rows.gather(1, tgt[:, None]).squeeze(1) - torch.logsumexp(rows, dim=-1)
    return logprob, greedy


@torch.no_grad()
def score(
    model,
    requests: list[Request],
    max_length: int,
    token_budget: int,
    device: torch.device,
    autocast=contextlib.nullcontext,
    progress: Callable[[int], object] | None = None,
    before_forward: Callable[[], object] | None = None,
) -> tuple[dict[int, tuple[float, bool]], list[int]]:
    """{request index: (sum of continuation log-probs, continuation is the greedy one)}, and the indices of
    the requests left for lm-eval's own path (empty contexts, continuations longer than `max_length`).
    `before_forward` is called before each forward (ranks whose forwards are collectives keep in step)."""
    implementation = getattr(model.config, "_attn_implementation", None) or "eager"
    if implementation not in MASKED_ATTENTION:
        return {}, list(range(len(requests)))
    rows, rest = plan_rows(requests, max_length)
    results: dict[int, tuple[float, bool]] = {}
    for batch in _batches(rows, token_budget):
        length = len(batch[0].tokens)
        ids = torch.zeros(len(batch), length, dtype=torch.long)
        positions = torch.zeros(len(batch), length, dtype=torch.long)
        for b, row in enumerate(batch):
            ids[b, : len(row.tokens)] = torch.tensor(row.tokens)
            positions[b, : len(row.tokens)] = torch.tensor(row.positions)
        # the head runs only where a request reads the next-token distribution (a boolean `logits_to_keep`
        # gives those positions' logits flattened in (row, position) order)
        keep = torch.zeros(len(batch), length, dtype=torch.bool)
        for b, row in enumerate(batch):
            keep[b, [p for _, at, _ in row.scored for p in at]] = True
        flat_index = (keep.flatten().cumsum(0) - 1).view(len(batch), length)
        # rows of one request each are plain causal rows (right padding cannot reach real positions): no
        # mask, so attention keeps its causal kernel; rows with branches need the branch mask
        branched = any(len(row.scored) > 1 for row in batch)
        mask = _attention_mask(batch, length, implementation, model.dtype).to(device) if branched else None
        if before_forward is not None:
            before_forward()
        with autocast():
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask,
                position_ids=positions.to(device) if branched else None,
                logits_to_keep=keep.to(device),
                use_cache=False,
            ).logits
        rows_of, positions_of, targets, owners = [], [], [], []
        for b, row in enumerate(batch):
            for index, at, continuation in row.scored:
                rows_of += [b] * len(at)
                positions_of += at
                targets += continuation
                owners.append((index, len(at)))
        picks = flat_index[torch.tensor(rows_of), torch.tensor(positions_of)].to(device)
        logprob, greedy = _target_logprobs(logits, picks, torch.tensor(targets, device=device))
        # per request: the sum of its tokens' log-probs and whether every token was the argmax
        lengths = torch.tensor([n for _, n in owners], device=device)
        request = torch.repeat_interleave(torch.arange(len(owners), device=device), lengths)
        sums = torch.zeros(len(owners), dtype=logprob.dtype, device=device).index_add_(0, request, logprob)
        misses = torch.zeros(len(owners), dtype=torch.long, device=device).index_add_(
            0, request, (~greedy).long()
        )
        for (index, _), total, missed in zip(owners, sums.tolist(), misses.tolist(), strict=True):
            results[index] = (total, missed == 0)
        if progress is not None:  # requests done, as lm-eval's progress bar counts them
            progress(len(owners))
    return results, rest
