"""The `pretrain` command line: argparse only. Each verb is one typed function of `commands/` (see `VERBS`).

    pretrain validate recipes/*/config.yaml
    pretrain preflight recipes/smollm2-135m/config.yaml    # go / no-go in a minute: every check a run can fail
    pretrain plan recipes/smollm2-135m/config.yaml [--json]
    pretrain plan --budget-gpu-hours 1000 --gpu h100
    pretrain plan recipes/llama-3.1-8b/config.yaml --gpus 64
    pretrain ladder recipes/tiny/config.yaml               # small runs -> the recipe's own scaling law
    pretrain mixture RECIPE                                # proxies on candidate mixes -> the proposed mix
    pretrain run recipes/tiny/config.yaml                  # every stage, skipping current ones
    pretrain curate|tokenizer|pack RECIPE                  # one data stage
    accelerate launch --config_file accelerate_configs/ddp.yaml -m pretrain train RECIPE [--resume auto]
    pretrain eval outputs/tiny/final --tasks val_bpb       # or OUTPUT_DIR for every checkpoint
    pretrain inspect-batch outputs/tiny --step 372         # the documents of a step's batch
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

from pretrain import __version__
from pretrain.commands.anneal import anneal
from pretrain.commands.average import average
from pretrain.commands.evaluate import EvalOptions, evaluate
from pretrain.commands.explain import explain
from pretrain.commands.inspect_batch import inspect_batch
from pretrain.commands.ladder import LadderRequest, ladder
from pretrain.commands.launch import LaunchRequest
from pretrain.commands.mixture import mixture
from pretrain.commands.plan import plan
from pretrain.commands.preflight import preflight
from pretrain.commands.push import push
from pretrain.commands.run import run_command, stage_command
from pretrain.commands.stages import STAGES
from pretrain.commands.validate import validate
from pretrain.commands.watch import watch
from pretrain.config import Recipe, load_recipe
from pretrain.core.arguments import fraction, positive_float, positive_int
from pretrain.core.dist import release_process_group
from pretrain.core.errors import CurationSubmitted, Interrupted, PretrainError
from pretrain.core.progress import enable_crash_traces
from pretrain.core.supervisor import report_failure


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

    for stage in STAGES.values():  # one command per registered stage
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    enable_crash_traces(sys.stderr)  # a native crash (SIGSEGV) prints the Python stack on stderr
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        command = VERBS.get(args.command) or _stage(
            args.command
        )  # the stages: one verb each, from the registry
        return int(command(args, argv) or 0)
    except CurationSubmitted as exc:  # handed to Slurm: the user re-runs when the jobs finish
        print(str(exc))
        return 0
    except PretrainError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        report_failure(str(exc))  # a supervising parent must not restart a job over its input
        return 1
    except Interrupted as exc:  # stopped by a signal after its checkpoint: not a success
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pretrain plan R | head`: the reader left early, which is not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except OSError as exc:  # a path the system refused (permissions, a file where a folder goes, a full disk)
        if exc.filename is None:
            raise
        line = f"{exc.filename}: {exc.strerror or exc}; check the path and that you may write there"
        print(f"error: {line}", file=sys.stderr)
        report_failure(line)
        return 1
    finally:
        release_process_group()


def _recipe(args: argparse.Namespace) -> Recipe | None:
    """The command's RECIPE (or `--recipe`) with `--set` and `--output-dir` applied; None when none is given."""
    path = getattr(args, "recipe", None)
    return load_recipe(path, overrides=args.overrides, output_dir=args.output_dir) if path else None


def _launch(args: argparse.Namespace, argv: list[str]) -> LaunchRequest | None:
    """How to relaunch a training command under accelerate (None: `--no-relaunch`, run in this process)."""
    return None if args.no_relaunch else LaunchRequest(argv, args.num_processes)


def _stage(name: str):
    def verb(args: argparse.Namespace, argv: list[str]) -> int:
        options = {o.dest: getattr(args, o.dest) for o in STAGES[name].options}
        launch = None if STAGES[name].main_process_only else _launch(args, argv)
        checks = not getattr(args, "no_preflight", True)
        return stage_command(_recipe(args), name, args.force, options, launch, preflight=checks)

    return verb


# verb -> its command, called with the parsed arguments (and argv, for a relaunch under accelerate); each
# registered stage is a verb too (`_stage`)
VERBS = {
    "validate": lambda a, argv: validate(a.recipes, a.overrides, a.output_dir),
    "plan": lambda a, argv: plan(
        _recipe(a),
        as_json=a.json,
        budget_flops=a.budget_flops,
        budget_gpu_hours=a.budget_gpu_hours,
        budget_usd=a.budget_usd,
        gpu=a.gpu,
        mfu=a.mfu,
        gpus=a.gpus,
    ),
    "ladder": lambda a, argv: ladder(
        LadderRequest(
            a.recipe,
            a.overrides,
            a.output_dir,
            a.budget_flops,
            a.budget_gpu_hours,
            a.gpu,
            a.size_index,
            a.fit_only,
            a.num_processes,
            relaunch=not a.no_relaunch,
        ),
        _launch(a, argv),
    ),
    "mixture": lambda a, argv: mixture(_recipe(a)),
    "eval": lambda a, argv: evaluate(
        a.checkpoint,
        EvalOptions(
            a.tasks,
            a.limit,
            a.batch_size,
            a.num_fewshot,
            a.recipe,
            a.overrides,
            a.json,
            Path(a.output_dir) if a.output_dir else None,
        ),
    ),
    "inspect-batch": lambda a, argv: inspect_batch(
        a.output_dir_arg, a.step, a.data_step, a.json, a.tokens, a.overrides
    ),
    "push": lambda a, argv: push(
        a.checkpoint, a.repo_id, a.revision, a.private, a.dry_run, a.include_optimizer, a.recipe, a.overrides
    ),
    "anneal": lambda a, argv: anneal(
        a.checkpoint, a.output_dir, a.weight or [], a.tokens, a.steps, a.overrides, _launch(a, argv)
    ),
    "average": lambda a, argv: average(a.checkpoints, a.output, a.weights),
    "explain": lambda a, argv: explain(a.key, _recipe(a)),
    "run": lambda a, argv: run_command(
        _recipe(a), a.force, a.skip_eval, _launch(a, argv), preflight=not a.no_preflight
    ),
    "watch": lambda a, argv: watch(a.output_dir_, a.once, a.interval, a.width),
    "preflight": lambda a, argv: preflight(a.recipe, a.overrides, a.output_dir, a.num_processes),
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
