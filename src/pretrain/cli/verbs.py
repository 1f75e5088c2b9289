"""Each verb of `pretrain` mapped to its one typed function of `commands/`, called with the parsed arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def _recipe(args: argparse.Namespace) -> Recipe | None:
    """The command's RECIPE (or `--recipe`) with `--set` and `--output-dir` applied; None when none is given."""
    path = getattr(args, "recipe", None)
    return load_recipe(path, overrides=args.overrides, output_dir=args.output_dir) if path else None


def _launch(args: argparse.Namespace, argv: list[str]) -> LaunchRequest | None:
    """How to relaunch a training command under accelerate (None: `--no-relaunch`, run in this process)."""
    return None if args.no_relaunch else LaunchRequest(argv, args.num_processes)


def stage_verb(name: str):
    """A registered data or training stage as a verb (`pretrain curate|tokenizer|pack|train RECIPE`)."""

    def verb(args: argparse.Namespace, argv: list[str]) -> int:
        options = {o.dest: getattr(args, o.dest) for o in STAGES[name].options}
        launch = None if STAGES[name].main_process_only else _launch(args, argv)
        checks = not getattr(args, "no_preflight", True)
        return stage_command(_recipe(args), name, args.force, options, launch, preflight=checks)

    return verb


# verb -> its command, called with the parsed arguments (and argv, for a relaunch under accelerate); each
# registered stage is a verb too (`stage_verb`)
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
