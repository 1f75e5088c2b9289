"""In-loop evaluation split over data-parallel ranks: the same numbers as one process, in a fraction of its time.

    python bench/parallel_eval.py              # the tiny recipe's model shape and cloze task, limit 400, 3 evaluations
    python bench/parallel_eval.py --quick      # limit 40, 1 evaluation (CI's smoke test)

The in-loop evaluator (`evaluation/loop.py`, what `pretrain train` runs at every `eval.every_fraction`) scores a
random-init model of the tiny recipe's shape (4 x 128, vocabulary 4,096) on the built-in `stdlib_cloze`: on one
process, then on 2 CPU ranks (gloo, torchrun) that split the documents (lm-eval's own split, rank 0 aggregating),
then on one process again (the faster one-process time counts). Each time is the evaluator's own clock per
evaluation (tasks loaded beforehand, as the loop does before its first step), the median over the evaluations;
for 2 ranks the slower rank's. Timing needs a quiet machine: 2 ranks on 2 cores compete with anything else.
Last stdout line: {"bench": "parallel_eval", "limit", "one_rank_s", "two_ranks_s", "ratio", "same_numbers",
"metrics"}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast  # noqa: E402

from pretrain.core.layout import RunLayout  # noqa: E402
from pretrain.evaluation.data_parallel import DataParallelEval  # noqa: E402
from pretrain.evaluation.loop import LoopEvaluator  # noqa: E402


class TorchDistAccelerator:
    is_main_process = property(lambda self: not dist.is_initialized() or dist.get_rank() == 0)
    num_processes = property(lambda self: dist.get_world_size() if dist.is_initialized() else 1)

    def wait_for_everyone(self) -> None:
        if dist.is_initialized():
            dist.barrier()


def byte_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def evaluate(out: Path, limit: int, evaluations: int) -> dict:
    """The in-loop evaluator on this process (or this rank of a launch): metrics and seconds per evaluation."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    recipe = SimpleNamespace(
        out=out,
        layout=RunLayout(out),
        seed=0,
        eval=SimpleNamespace(
            tasks=["stdlib_cloze"], local_tasks=[], limit=limit, batch_size=4, num_fewshot=0, rc_bpb=False
        ),
        train=SimpleNamespace(seq_len=256),
    )
    data = None
    if dist.is_initialized():
        data = DataParallelEval(dist.get_rank(), dist.get_world_size())
    evaluator = LoopEvaluator(recipe, byte_tokenizer(), TorchDistAccelerator(), data)
    evaluator.prepare()
    seconds, metrics = [], {}
    for step in range(evaluations):
        before = evaluator.seconds
        metrics = evaluator(model, step=step + 1, tokens_seen=0)
        seconds.append(evaluator.seconds - before)
    return {"metrics": metrics, "seconds": statistics.median(seconds)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="limit 40, one evaluation (CI smoke test)")
    p.add_argument("--limit", type=int, default=400)
    p.add_argument("--evaluations", type=int, default=3)
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        out, limit, evaluations = Path(args.worker[0]), int(args.worker[1]), int(args.worker[2])
        dist.init_process_group("gloo")
        result = evaluate(out, limit, evaluations)
        seconds = [None] * dist.get_world_size()
        dist.all_gather_object(seconds, result["seconds"])
        if dist.get_rank() == 0:
            (out / "ranks.json").write_text(
                json.dumps({"metrics": result["metrics"], "seconds": max(seconds)})
            )
        dist.destroy_process_group()
        return
    limit, evaluations = (40, 1) if args.quick else (args.limit, args.evaluations)
    with tempfile.TemporaryDirectory() as tmp:
        one = evaluate(Path(tmp) / "one", limit, evaluations)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        ranks_out = Path(tmp) / "two"
        ranks_out.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", __file__]
        proc = subprocess.run(
            [*cmd, "--worker", str(ranks_out), str(limit), str(evaluations)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"the ranks failed:\n{proc.stderr[-4000:]}")
        two = json.loads((ranks_out / "ranks.json").read_text())
        again = evaluate(Path(tmp) / "again", limit, evaluations)
    one_s = min(one["seconds"], again["seconds"])
    summary = {
        "bench": "parallel_eval",
        "limit": limit,
        "one_rank_s": round(one_s, 3),
        "two_ranks_s": round(two["seconds"], 3),
        "ratio": round(two["seconds"] / one_s, 3),
        "same_numbers": two["metrics"] == one["metrics"] == again["metrics"],
        "metrics": one["metrics"],
    }
    print(
        f"stdlib_cloze, limit {limit}: one process {summary['one_rank_s']} s per evaluation, 2 ranks "
        f"{summary['two_ranks_s']} s ({summary['ratio']:.2f}x), same numbers: {summary['same_numbers']}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
