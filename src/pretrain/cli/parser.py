"""The argument parser of `pretrain`: every verb's arguments and help, nothing that runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from pretrain import __version__
from pretrain.commands.stage_commands import STAGE_COMMANDS
from pretrain.core.arguments import fraction, positive_float, positive_int


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set train.steps=100 (repeatable)",
    )
    p.add_argument("--output-dir", default=None, help="where outputs go (default: the recipe's output_dir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pretrain", description="Pretrain a causal LM from a recipe YAML.")
    parser.add_argument(
        "--version", action="version", version=f"pretrain (pretraining-handbook) {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="load and validate recipes; exit 1 listing every problem")
    p.add_argument("recipes", nargs="+", type=Path)
    _common(p)

    p = sub.add_parser(
        "plan", help="parameters, tokens, FLOPs, memory and GPU-hours for a recipe (or a budget)"
    )
    p.add_argument("recipe", nargs="?", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--budget-flops", type=positive_float, default=None, help="propose a compute-optimal size for C FLOPs"
    )
    p.add_argument(
        "--budget-gpu-hours", type=positive_float, default=None, help="propose a size for H GPU-hours"
    )
    p.add_argument(
        "--budget-usd",
        type=positive_float,
        default=None,
        help="propose a size for D US dollars, priced by the recipe's plan section (rented or owned GPUs)",
    )
    p.add_argument("--gpu", default=None, help="GPU for --budget-gpu-hours / the estimate (h100, a100, ...)")
    p.add_argument(
        "--mfu", type=fraction, default=None, help="assumed MFU for GPU-hour figures, in (0, 1] (default 0.4)"
    )
    p.add_argument(
        "--gpus",
        type=positive_int,
        default=None,
        help="propose a device mesh (FSDP x TP) that fits on N GPUs of --gpu",
    )
    _common(p)

    p = sub.add_parser(
        "watch", help="live view of a run: loss and val bits/byte vs its forecast, tok/s, MFU, ETA, evals"
    )
    p.add_argument("output_dir_", metavar="OUTPUT_DIR", type=Path, help="the run's folder")
    p.add_argument("--once", action="store_true", help="print the view once as plain text (logs, CI)")
    p.add_argument(
        "--interval", type=positive_float, default=5.0, help="seconds between refreshes (default 5)"
    )
    p.add_argument(
        "--width", type=positive_int, default=None, help="--once: columns of the text (default 100)"
    )

    p = sub.add_parser(
        "preflight",
        help="every check a run can fail later, in a minute: one line each, exit 1 on any failure",
    )
    p.add_argument("recipe", type=Path)
    p.add_argument(
        "--num-processes",
        type=positive_int,
        default=None,
        help="check the launch with N processes (as run/train take it)",
    )
    _common(p)

    p = sub.add_parser(
        "ladder",
        help="train a ladder of small models of the recipe's family and fit its scaling law (ladder/)",
    )
    p.add_argument("recipe", type=Path)
    p.add_argument(
        "--budget-flops",
        type=positive_float,
        default=None,
        help="forecast the compute-optimal run of C FLOPs",
    )
    p.add_argument(
        "--budget-gpu-hours", type=positive_float, default=None, help="... of H GPU-hours (with --gpu)"
    )
    p.add_argument("--gpu", default=None, help="GPU for --budget-gpu-hours (h100, a100, ...)")
    # ladder.executor slurm: what the submitted jobs run (hidden: `pretrain ladder` writes them)
    p.add_argument("--size-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fit-only", action="store_true", help=argparse.SUPPRESS)
    _launch_options(p)
    _common(p)

    p = sub.add_parser(
        "mixture",
        help="train small proxies on candidate data mixes, fit how each source's share moves the target, and "
        "propose the mix (mixture/)",
    )
    p.add_argument("recipe", type=Path)
    _common(p)

    for stage in STAGE_COMMANDS.values():  # one command per stage (commands/stage_commands.py)
        p = sub.add_parser(stage.name, help=stage.help)
        p.add_argument("recipe", type=Path)
        p.add_argument("--force", action="store_true", help="re-run even if the output is current")
        for option in stage.options:
            p.add_argument(option.flag, default=option.default, help=option.help)
        if not stage.main_process_only:
            _launch_options(p)
            _preflight_option(p)
        _common(p)

    p = sub.add_parser("eval", help="lm-eval on a checkpoint, or on every checkpoint of an output dir")
    p.add_argument("checkpoint", type=Path)
    p.add_argument(
        "--tasks", default=None, help="comma-separated task names (default: the run's recipe eval.tasks)"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="items per task; 0: every item (default: the recipe's eval.limit, else every item)",
    )
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument(
        "--recipe", type=Path, default=None, help="recipe for local task paths (default: the run's copy)"
    )
    p.add_argument("--json", action="store_true", help="print the results JSON")
    _common(p)

    p = sub.add_parser("inspect-batch", help="the documents of a training step's batch, drawn again")
    p.add_argument("output_dir_arg", type=Path, metavar="OUTPUT_DIR", help="the run's output_dir")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--step", type=int, help="optimizer step as metrics.jsonl counts it (from 1)")
    which.add_argument("--data-step", type=int, help="global batch index (from 0; skip events' data_step)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tokens", action="store_true", help="also print every window's token ids")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser("push", help="render the model card and upload a checkpoint to the Hub")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--repo-id", default=None, help="namespace/name (default: the recipe's hub.repo_id)")
    p.add_argument("--revision", default=None, help="branch to push to (default: main)")
    p.add_argument("--private", action="store_true", default=None)
    p.add_argument(
        "--dry-run", type=Path, default=None, metavar="DIR", help="write what would be uploaded to DIR"
    )
    p.add_argument("--include-optimizer", action="store_true", help="also upload trainer_state/")
    p.add_argument("--recipe", type=Path, default=None)
    _common(p)

    p = sub.add_parser(
        "anneal",
        help="branch a decay from a stable checkpoint with a new mix and length (SmolLM2-style annealing)",
    )
    p.add_argument("checkpoint", type=Path, help="a complete checkpoint folder (checkpoints/step-NNNNNNN)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument(
        "--tokens", type=positive_int, default=None, help="anneal length in tokens (whole global batches)"
    )
    length.add_argument("--steps", type=positive_int, default=None, help="anneal length in optimizer steps")
    p.add_argument(
        "--weight",
        action="append",
        metavar="SOURCE=WEIGHT",
        help="the anneal mix: a source of the run's data.sources and its weight (repeatable)",
    )
    _launch_options(p)  # the anneal runs with --set accelerate_config=PATH (relative to here), like train
    _common(p)

    p = sub.add_parser("average", help="average the weights of checkpoints of one run into an HF folder")
    p.add_argument("checkpoints", type=Path, nargs="+", help="checkpoint (or final/) folders, oldest first")
    p.add_argument("--output", type=Path, required=True, help="folder to write the averaged model to")
    p.add_argument(
        "--weights",
        default=None,
        help="comma-separated positive weights, one per checkpoint (normalised; default: uniform)",
    )

    p = sub.add_parser(
        "explain", help="type, default and description of a recipe key (a section lists its keys)"
    )
    p.add_argument(
        "key", nargs="?", default="", help="dotted key, e.g. train.optimizer.lr, data.sources[].weight, train"
    )
    p.add_argument("--recipe", type=Path, default=None, help="also show this recipe's value of the key")
    _common(p)

    p = sub.add_parser("run", help="every stage in order, skipping stages whose outputs are current")
    _launch_options(p)
    p.add_argument("recipe", type=Path)
    p.add_argument("--force", action="store_true", help="re-run every stage")
    p.add_argument("--skip-eval", action="store_true", help="skip the final benchmark table")
    _preflight_option(p)
    _common(p)
    return parser


def _preflight_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-preflight",
        action="store_true",
        help="start without the preflight checks (`pretrain preflight RECIPE` runs them alone)",
    )


def _launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-processes",
        type=positive_int,
        default=None,
        help="relaunch under accelerate with N processes (default: the recipe's accelerate_config)",
    )
    p.add_argument(
        "--no-relaunch",
        action="store_true",
        help="run in this process even if the recipe's accelerate_config asks for more processes or a GPU",
    )
