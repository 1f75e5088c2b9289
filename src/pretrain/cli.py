"""The `pretrain` command line.

    pretrain validate recipes/*/config.yaml
    pretrain plan recipes/smollm2-135m/config.yaml [--json]
    pretrain plan --budget-gpu-hours 1000 --gpu h100
    pretrain ladder recipes/tiny/config.yaml               # small runs -> the recipe's own scaling law
    pretrain run recipes/tiny/config.yaml                  # every stage, skipping current ones
    pretrain curate|tokenizer|pack RECIPE                  # one data stage
    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain train RECIPE [--resume auto]
    pretrain eval outputs/tiny/final --tasks val_bpb       # or OUTPUT_DIR for every checkpoint
    pretrain push outputs/tiny/final --repo-id me/tiny [--dry-run DIR]
    pretrain average outputs/tiny/checkpoints/step-0000180 .../step-0000200 --output outputs/tiny/avg
    pretrain anneal outputs/tiny/checkpoints/step-0000120 --output-dir outputs/tiny-anneal --tokens 491520 \
        --weight stdlib_docs=3 --weight stdlib_code=1        # branch a decay on a new mix from a stable checkpoint
    pretrain explain train.optimizer.lr [--recipe RECIPE]  # type, default, description of a recipe key

Every command takes `--set dotted.key=value` (typed and validated like the YAML) and `--output-dir`.
User errors print `file: key: problem` lines and exit 1 without a traceback. Commands that work on a run
folder (the stages, `run`, `eval`) keep what libraries print (progress bars, warnings) in its `pretrain.log`;
the console shows our lines: progress, one line per validation and evaluation, each stage's summary.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pretrain.config import load_recipe
from pretrain.config.explain import explain
from pretrain.core.dist import release_process_group
from pretrain.core.errors import CurationSubmitted, PretrainError, RecipeError
from pretrain.core.progress import capture_run_output
from pretrain.evaluation.command import run_eval_command
from pretrain.hub.command import run_push_command
from pretrain.launch import plan_launch, relaunch, strip_launch_flags
from pretrain.pipeline import check_upstream, run_all, run_stage
from pretrain.planning.ladder_run import run_ladder_command
from pretrain.planning.report import run_plan_command
from pretrain.stages import STAGES
from pretrain.train.anneal import anneal_recipe, parse_weights, run_anneal_command
from pretrain.train.average import average_checkpoints


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
        "--budget-flops", type=float, default=None, help="propose a compute-optimal size for C FLOPs"
    )
    p.add_argument("--budget-gpu-hours", type=float, default=None, help="propose a size for H GPU-hours")
    p.add_argument("--gpu", default=None, help="GPU for --budget-gpu-hours / the estimate (h100, a100, ...)")
    p.add_argument("--mfu", type=float, default=None, help="assumed MFU for GPU-hour figures (default 0.4)")
    _common(p)

    p = sub.add_parser(
        "ladder",
        help="train a ladder of small models of the recipe's family and fit its scaling law (ladder/)",
    )
    p.add_argument("recipe", type=Path)
    p.add_argument(
        "--budget-flops", type=float, default=None, help="forecast the compute-optimal run of C FLOPs"
    )
    p.add_argument("--budget-gpu-hours", type=float, default=None, help="... of H GPU-hours (with --gpu)")
    p.add_argument("--gpu", default=None, help="GPU for --budget-gpu-hours (h100, a100, ...)")
    # ladder.executor slurm: what the submitted jobs run (hidden: `pretrain ladder` writes them)
    p.add_argument("--size-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fit-only", action="store_true", help=argparse.SUPPRESS)
    _launch_options(p)
    _common(p)

    for stage in STAGES.values():  # one command per registered stage
        p = sub.add_parser(stage.name, help=stage.help)
        p.add_argument("recipe", type=Path)
        p.add_argument("--force", action="store_true", help="re-run even if the output is current")
        for option in stage.options:
            p.add_argument(option.flag, default=option.default, help=option.help)
        if not stage.main_process_only:
            _launch_options(p)
        _common(p)

    p = sub.add_parser("eval", help="lm-eval on a checkpoint, or on every checkpoint of an output dir")
    p.add_argument("checkpoint", type=Path)
    p.add_argument(
        "--tasks", default=None, help="comma-separated task names (default: the run's recipe eval.tasks)"
    )
    p.add_argument("--limit", type=int, default=None, help="max examples per task")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument(
        "--recipe", type=Path, default=None, help="recipe for local task paths (default: the run's copy)"
    )
    p.add_argument("--json", action="store_true", help="print the results JSON")
    _common(p)

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
        "--tokens", type=int, default=None, help="anneal length in tokens (whole global batches)"
    )
    length.add_argument("--steps", type=int, default=None, help="anneal length in optimizer steps")
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
    _common(p)
    return parser


def _launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="relaunch under accelerate with N processes (default: the recipe's accelerate_config)",
    )
    p.add_argument(
        "--no-relaunch",
        action="store_true",
        help="run in this process even if the recipe's accelerate_config asks for more processes or a GPU",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if getattr(args, "no_relaunch", True) is False and not _submits_or_fits(args):
            recipe = _launched_recipe(args)
            launch = plan_launch(recipe, strip_launch_flags(argv), args.num_processes)
            if launch is not None:
                if args.command in STAGES:
                    # a missing or stale input fails every launched rank alike, and the launcher's restart
                    # budget would retry it: say it once, here, before launching anything
                    check_upstream(recipe, args.command)
                relaunch(launch)  # does not return
        return int(_dispatch(args) or 0)
    except CurationSubmitted as exc:  # handed to Slurm: the user re-runs when the jobs finish
        print(str(exc))
        return 0
    except PretrainError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pretrain plan R | head`: the reader left early, which is not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    finally:
        release_process_group()


def _submits_or_fits(args: argparse.Namespace) -> bool:
    """`pretrain ladder` that only submits Slurm jobs or fits: one process, no launcher (the array tasks
    relaunch themselves as the recipe's training is launched)."""
    if args.command != "ladder" or args.size_index is not None:
        return False
    return args.fit_only or _load(args).ladder.executor == "slurm"


def _launched_recipe(args: argparse.Namespace):
    """The recipe whose launch config decides the relaunch: the command's, or the anneal branch's."""
    if args.command == "anneal":
        _require_output_dir(args)
        return anneal_recipe(
            args.checkpoint,
            args.output_dir,
            parse_weights(args.weight or []),
            args.tokens,
            args.steps,
            args.overrides,
        )[1]
    return _load(args)


def _require_output_dir(args: argparse.Namespace) -> None:
    if not args.output_dir:
        raise PretrainError("anneal: give --output-dir DIR (the anneal is a run of its own)")


def _load(args: argparse.Namespace, path: Path | None = None):
    return load_recipe(path or args.recipe, overrides=args.overrides, output_dir=args.output_dir)


def _dispatch(args: argparse.Namespace) -> int | None:
    cmd = args.command
    if cmd == "validate":
        return _validate(args)
    if cmd == "plan":
        return run_plan_command(args, _load(args) if args.recipe else None)
    if cmd == "ladder":
        return run_ladder_command(args, _load(args))
    if cmd in STAGES:
        options = {o.dest: getattr(args, o.dest) for o in STAGES[cmd].options}
        recipe = _load(args)
        with capture_run_output(recipe.layout.log_file):  # libraries' bars and warnings: to the run's log
            run_stage(recipe, cmd, force=args.force, **options)
        return 0
    if cmd == "eval":
        return run_eval_command(args)
    if cmd == "push":
        return run_push_command(args)
    if cmd == "anneal":
        _require_output_dir(args)
        return run_anneal_command(args)
    if cmd == "average":
        return _average(args)
    if cmd == "explain":
        print(explain(args.key, _load(args) if args.recipe else None))
        return 0
    if cmd == "run":
        recipe = _load(args)
        with capture_run_output(recipe.layout.log_file):
            run_all(recipe, force=args.force, skip_eval=args.skip_eval)
        return 0
    raise AssertionError(cmd)


def _average(args: argparse.Namespace) -> int:
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        raise PretrainError(f"--weights: {args.weights!r} is not a comma-separated list of numbers") from None
    report = average_checkpoints(args.checkpoints, args.output, weights)
    rows = [*report["ingredients"], {"checkpoint": f"average -> {args.output}", **report.get("average", {})}]
    for row in rows:
        val = f"val/loss {row['val/loss']:.5f}  val/bpb {row['val/bpb']}" if "val/loss" in row else ""
        weight = f"w={row['weight']:.3f}" if "weight" in row else ""
        print(f"{row['checkpoint']}  {weight}  {val}".rstrip())
    return 0


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.recipes:
        try:
            recipe = _load(args, path)
        except RecipeError as exc:
            failed += 1
            for line in exc.problems:
                print(f"error: {line}", file=sys.stderr)
            continue
        print(f"ok: {path} ({recipe.name}: {recipe.model.model_type}, {len(recipe.data.sources)} sources)")
    if failed:
        print(f"{failed} of {len(args.recipes)} recipe(s) invalid", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
