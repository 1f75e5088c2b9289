"""Quality per compute: our recipe vs a plain Hugging Face loop at the same wall time, scored by one scorer.

    python bench/quality_per_compute.py                          # the tiny recipe as it is (200 steps)
    python bench/quality_per_compute.py --seconds 60             # short: ours sized to ~60 s, baselines get its time
    python bench/quality_per_compute.py --seconds 60 --set train.optimizer.name=muon --baseline-lrs ''  # a lever

(a) Ours: `Trainer.run()` on the recipe, exactly what `pretrain train` runs (schedule, init, in-loop evaluation,
validation and checkpoints included in its wall time), with a checkpoint at every 10% of training.
(b) The plain loop, once per learning rate in `--baseline-lrs` (default 5e-4, 1e-3, 3e-3, 6e-3): the same
architecture and parameter count from `AutoModelForCausalLM.from_config` with transformers' default init,
`torch.optim.AdamW` (transformers Trainer defaults: betas 0.9/0.999, no weight decay), a linear decay to 0 with
no warmup, grad-norm clip 1.0, no compile, fp32, `model(input_ids, labels=input_ids).loss`, on the same batches
in the same order (the run's packed train split). Each baseline trains for ours' wall time: its step count is
calibrated from its own step time, and it stops at the time limit regardless.

One scorer for every model: held-out bits per byte of the run's val documents (`tokens/val_docs.jsonl`) with
lm-eval's rolling log-likelihood (the `val_bpb` task of the in-loop evaluation, all documents). Ours is scored
at each checkpoint, so the bench also reports the fraction of the best baseline's wall time that ours needs to
reach the best baseline's final bits/byte (linear interpolation between checkpoints; null if never reached).

The data stages (curate, tokenizer, pack) run once in `--work-dir` (a temporary folder unless given; reused
when it already holds them). Times are wall-clock: on a shared machine run the variants one after the other and
compare ratios, not absolute seconds. Last stdout line: {"bench": "quality_per_compute", "params", "seconds",
"ours_bpb", "best_baseline_bpb", "best_baseline_lr", "bpb_ratio", "time_to_baseline_fraction", ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pretrain.commands.run import run_stage  # noqa: E402
from pretrain.commands.stages import stage_output  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.evaluation.harness import flatten  # noqa: E402
from pretrain.evaluation.live import LiveEvaluation  # noqa: E402
from pretrain.evaluation.task_yaml import write_task_yamls  # noqa: E402
from pretrain.modeling import build_hf_config, count_parameters  # noqa: E402
from pretrain.tokens.loader import TokenLoader  # noqa: E402
from pretrain.tokens.tokenizer import load_tokenizer  # noqa: E402
from pretrain.train.checkpoint import list_checkpoints  # noqa: E402
from pretrain.train.loop import Trainer  # noqa: E402
from pretrain.train.metrics import EVENT_START, read_records  # noqa: E402
from pretrain.train.setup import prepare_process  # noqa: E402

BASELINE_LRS = "5e-4,1e-3,3e-3,6e-3"
SCORE_KEY = "eval/val_bpb/bits_per_byte"
# with --seconds, ours' step count is sized so that training takes this share of the budget: the rest is its
# in-loop evaluation, validation and checkpoints (the baselines then get ours' measured time, whatever it was)
TRAIN_SHARE = 0.85


class Scorer:
    """Held-out bits/byte of a model on the run's val documents (lm-eval `val_bpb`, every document)."""

    def __init__(self, recipe, seq_len: int | None = None):
        include, local = write_task_yamls(recipe.out, recipe, ["val_bpb"])
        self.tokenizer = load_tokenizer(recipe.layout.tokenizer)
        # the rolling windows' length: the recipe's seq_len unless a sequence-length lever is scored on the
        # default's windows (`--score-seq-len`), so that every variant sees the same context per token
        self.live = LiveEvaluation(
            include, ["val_bpb"], local, None, recipe.eval.batch_size, None, seq_len or recipe.train.seq_len
        )

    def __call__(self, model) -> float:
        was_training = model.training
        model.eval()
        try:
            return flatten(self.live(model, self.tokenizer))[SCORE_KEY]
        finally:
            model.train(was_training)


def _recipe(args, work: Path, name: str, extra: list[str]):
    out = work / name
    recipe = load_recipe(args.recipe, overrides=[*args.overrides, *extra], output_dir=str(out))
    if out != work / "data":
        out.mkdir(parents=True, exist_ok=True)
        for stage in ("mix", "tokenizer", "tokens"):
            link = out / stage
            if not link.exists():
                link.symlink_to(work / "data" / stage, target_is_directory=True)
    return recipe


def prepare_data(args, work: Path):
    recipe = load_recipe(args.recipe, overrides=args.overrides, output_dir=str(work / "data"))
    for stage in ("curate", "tokenizer", "pack"):
        run_stage(recipe, stage)
    return recipe


def _train_ours(recipe) -> tuple[float, Trainer]:
    prepare_process()
    trainer = Trainer(recipe, stage_output(recipe, "train"), resume="never")
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start, trainer


def calibrated_steps(args, work: Path) -> int:
    """Ours' optimizer steps for a `--seconds` budget, from the step time of a 4-step run of the same recipe."""
    probe = _recipe(args, work, "probe", ["train.steps=4", "eval.enabled=false", "train.log_every=1"])
    _train_ours(probe)
    times = [r["step_time_s"] for r in read_records(probe.layout.metrics) if "step_time_s" in r]
    step_s = sorted(times[1:] or times)[len(times[1:] or times) // 2]  # median, first step excluded
    return max(10, int(args.seconds * TRAIN_SHARE / step_s))


def run_ours(args, work: Path, scorer_recipe, final_only: bool = False) -> dict:
    extra = ["train.checkpoint.every_fraction=0.1", "train.checkpoint.keep_last=100"]
    if args.seconds:
        extra.append(f"train.steps={calibrated_steps(args, work)}")
        extra.append("train.tokens=null")
    recipe = _recipe(args, work, "ours", extra)
    seconds, trainer = _train_ours(recipe)
    from transformers import AutoModelForCausalLM

    start = next(r["time"] for r in read_records(recipe.layout.metrics) if r.get("event") == EVENT_START)
    scorer = Scorer(scorer_recipe, args.score_seq_len)
    curve = []
    for ckpt in [] if final_only else list_checkpoints(recipe.layout.checkpoints):
        step = int(ckpt.name.split("-")[-1])
        model = AutoModelForCausalLM.from_pretrained(ckpt)
        # a checkpoint folder is renamed into place when complete: its mtime is when ours had reached it
        at = min(ckpt.stat().st_mtime - start, seconds)
        curve.append({"step": step, "seconds": round(at, 2), "bpb": scorer(model)})
    final = AutoModelForCausalLM.from_pretrained(recipe.layout.final)
    bpb = scorer(final)
    curve.append({"step": trainer.state.step, "seconds": round(seconds, 2), "bpb": bpb})
    return {"seconds": seconds, "bpb": bpb, "steps": trainer.state.step, "curve": curve}


def run_baseline(recipe, lr: float, seconds: float, scorer: Scorer) -> dict:
    """The plain loop at `lr` for `seconds` of wall time (see the module docstring)."""
    from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

    cfg = recipe.train
    tokenizer = load_tokenizer(recipe.layout.tokenizer)
    config = build_hf_config(
        recipe, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    config.initializer_range = 0.02  # transformers' default init, not the recipe's init_std
    config.use_cache = (
        False  # no KV cache built in training forwards (as bench/train_throughput.py's baseline)
    )
    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.train()
    accum = cfg.global_batch_tokens // (cfg.micro_batch_size * cfg.seq_len)
    loader = TokenLoader(recipe.layout.tokens, "train", cfg.seq_len, cfg.micro_batch_size, seed=recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, foreach=True)

    def step() -> float:
        total = 0.0
        for _ in range(accum):
            ids = next(loader)["input_ids"]
            loss = model(input_ids=ids, labels=ids).loss  # HF shifts the labels itself
            (loss / accum).backward()
            total += float(loss) / accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return total

    # calibrate the step count on a throwaway copy of the loop state, then start over from the same init
    init_state = {k: v.clone() for k, v in model.state_dict().items()}
    sched = get_linear_schedule_with_warmup(opt, 0, 10**9)
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    step_s = (time.perf_counter() - t0) / 3
    total_steps = max(1, int(seconds / step_s))
    model.load_state_dict(init_state)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, foreach=True)
    sched = get_linear_schedule_with_warmup(opt, 0, total_steps)
    loader = TokenLoader(recipe.layout.tokens, "train", cfg.seq_len, cfg.micro_batch_size, seed=recipe.seed)
    start, done, loss = time.perf_counter(), 0, float("nan")
    while done < total_steps and time.perf_counter() - start < seconds:
        loss = step()
        done += 1
    elapsed = time.perf_counter() - start
    bpb = scorer(model) if math.isfinite(loss) else float("inf")
    return {"lr": lr, "steps": done, "planned_steps": total_steps, "seconds": round(elapsed, 2), "bpb": bpb}


def time_to_reach(curve: list[dict], target: float) -> float | None:
    """Earliest time at which ours' bits/byte reaches `target` (linear between scored checkpoints)."""
    prev_t, prev_b = 0.0, None
    for point in curve:
        t, b = point["seconds"], point["bpb"]
        if b <= target:
            if prev_b is None or prev_b == b:
                return t
            return prev_t + (t - prev_t) * (prev_b - target) / (prev_b - b)
        prev_t, prev_b = t, b
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=REPO / "recipes" / "tiny" / "config.yaml")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="recipe override (ours and data)"
    )
    p.add_argument("--seconds", type=float, default=None, help="wall-time budget for ours (approximate)")
    p.add_argument("--baseline-lrs", default=BASELINE_LRS, help="comma-separated; '' skips the baselines")
    p.add_argument(
        "--final-only",
        action="store_true",
        help="score only ours' final model (lever sweeps; time_to_baseline_fraction needs the checkpoints)",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="keep the runs here (data stages are reused)")
    p.add_argument(
        "--score-seq-len",
        type=int,
        default=None,
        help="score every model in rolling windows of this many tokens (default: the recipe's train.seq_len); "
        "to compare a train.seq_len lever on the default's windows",
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = prepare_data(args, work)
        ours = run_ours(args, work, data, final_only=args.final_only)
        tokenizer = load_tokenizer(data.layout.tokenizer)
        params, _ = count_parameters(build_hf_config(data, len(tokenizer)))
        print(f"ours: {ours['steps']} steps in {ours['seconds']:.1f} s, held-out {ours['bpb']:.4f} bits/byte")
        scorer = Scorer(data, args.score_seq_len)
        baselines = []
        for lr in [float(x) for x in args.baseline_lrs.split(",") if x.strip()]:
            row = run_baseline(data, lr, ours["seconds"], scorer)
            baselines.append(row)
            print(
                f"plain loop lr {lr:g}: {row['steps']} steps in {row['seconds']:.1f} s, {row['bpb']:.4f} bits/byte"
            )
    best = min(baselines, key=lambda r: r["bpb"]) if baselines else None
    reach = time_to_reach(ours["curve"], best["bpb"]) if best else None
    print(
        json.dumps(
            {
                "bench": "quality_per_compute",
                "params": params,
                "seconds": round(ours["seconds"], 2),
                "ours_bpb": round(ours["bpb"], 4),
                "best_baseline_bpb": round(best["bpb"], 4) if best else None,
                "best_baseline_lr": best["lr"] if best else None,
                "bpb_ratio": round(ours["bpb"] / best["bpb"], 4) if best else None,
                "time_to_baseline_fraction": round(reach / best["seconds"], 3)
                if best and reach is not None
                else None,
                "ours_steps": ours["steps"],
                "ours_curve": ours["curve"],
                "baselines": baselines,
                "overrides": args.overrides,
                "score_seq_len": args.score_seq_len or data.train.seq_len,
            }
        )
    )


if __name__ == "__main__":
    main()
