"""The stage registry: one entry per stage drives `pretrain run`, the CLI's stage commands and fingerprints.

    curate ──▶ tokenizer ──▶ pack ──▶ train

Each `Stage` names its output folder (a `RunLayout` entry), what it reads from the recipe (its
`inputs`, hashed into the fingerprint together with its upstream stages' fingerprints), its upstream
stages and its run function. A stage module owns its run function and its inputs; nothing else knows
a stage by name. To add a stage: write its module, then add one entry to `STAGES` (in pipeline order) and
its verb to `STAGE_COMMANDS` (commands/stage_commands.py).

A stage folder is current when its `STAGE.json` records the fingerprint computed now (core/markers.py),
so a changed recipe re-runs exactly the stages it affects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pretrain.commands.stage_commands import STAGE_COMMANDS, CliOption, StageCommand
from pretrain.config import Recipe
from pretrain.core.errors import StageError
from pretrain.core.layout import RunLayout
from pretrain.core.markers import StageOutput, marker_damage, read_marker
from pretrain.data import curate
from pretrain.tokens import pack, tokenizer
from pretrain.train import loop as train


@dataclass(frozen=True)
class Stage:
    name: str
    folder: Callable[[RunLayout], Path]
    inputs: Callable[[Recipe], object]
    """What the stage reads from the recipe (JSON-able): a change re-runs it and every stage downstream."""
    upstream: Callable[[Recipe], tuple[str, ...]]
    run: Callable[..., object]
    """run(recipe, StageOutput, **options): publishes the folder with its marker; may return a summary."""

    @property
    def command(self) -> StageCommand:
        """Its verb: help, options, main process only or every rank (commands/stage_commands.py)."""
        return STAGE_COMMANDS[self.name]

    @property
    def help(self) -> str:
        return self.command.help

    @property
    def main_process_only(self) -> bool:
        return self.command.main_process_only

    @property
    def options(self) -> tuple[CliOption, ...]:
        return self.command.options


def _publishing(produce: Callable[[Recipe, Path], dict]) -> Callable[[Recipe, StageOutput], dict]:
    """A stage that fills a temporary folder: publish it atomically with its marker."""

    def run(recipe: Recipe, out: StageOutput) -> dict:
        return out.publish(lambda tmp: produce(recipe, tmp))

    return run


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            name="curate",
            folder=lambda layout: layout.mix,
            inputs=curate.fingerprint_inputs,
            upstream=lambda recipe: (),
            run=curate.curate,
        ),
        Stage(
            name="tokenizer",
            folder=lambda layout: layout.tokenizer,
            inputs=tokenizer.fingerprint_inputs,
            # a reused pretrained tokenizer reads no mix, unless new tokens are learnt on it
            upstream=lambda recipe: () if tokenizer.reads_no_mix(recipe) else ("curate",),
            run=_publishing(tokenizer.build_tokenizer),
        ),
        Stage(
            name="pack",
            folder=lambda layout: layout.tokens,
            inputs=pack.fingerprint_inputs,
            upstream=lambda recipe: ("tokenizer", "curate"),
            run=pack.pack,
        ),
        Stage(
            name="train",
            folder=lambda layout: layout.final,
            inputs=train.fingerprint_inputs,
            upstream=lambda recipe: ("pack",),
            run=train.run_training,
        ),
    )
}


def get_stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise StageError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None


def stage_path(recipe: Recipe, name: str) -> Path:
    return get_stage(name).folder(recipe.layout)


def data_stage_names() -> list[str]:
    """The stages that prepare data (main process only), in pipeline order."""
    return [name for name, stage in STAGES.items() if stage.main_process_only]


def upstream_stages(recipe: Recipe, name: str) -> tuple[str, ...]:
    return get_stage(name).upstream(recipe)


def fingerprint(recipe: Recipe, name: str) -> str:
    """Hash of what the stage reads from the recipe and of its upstream stages' fingerprints."""
    stage = get_stage(name)
    h = hashlib.sha256()
    h.update(name.encode())
    h.update(json.dumps(stage.inputs(recipe), sort_keys=True, default=str).encode())
    for up in stage.upstream(recipe):
        h.update(fingerprint(recipe, up).encode())
    return h.hexdigest()[:16]


def stage_inputs(recipe: Recipe, name: str) -> dict:
    """What the stage's fingerprint hashes of the recipe, as plain JSON values."""
    return json.loads(json.dumps(get_stage(name).inputs(recipe), sort_keys=True, default=str))


def stage_output(recipe: Recipe, name: str) -> StageOutput:
    """Where stage `name` publishes, with the fingerprint (and the inputs) its marker records."""
    return StageOutput(
        name,
        stage_path(recipe, name),
        fingerprint(recipe, name),
        recipe.source_label,
        stage_inputs(recipe, name),
    )


def is_current(recipe: Recipe, name: str) -> bool:
    """Built for this recipe and, for a sealed folder (`final/`), its files there with the sizes they were
    published with. Sizes, not digests: every rank of a launched run asks, and all must agree cheaply; `pretrain
    push` checks the digests too."""
    folder = stage_path(recipe, name)
    marker = read_marker(folder)
    return (
        bool(marker) and marker.get("fingerprint") == fingerprint(recipe, name) and not damaged(recipe, name)
    )


def damaged(recipe: Recipe, name: str) -> list[str]:
    """Files of a stage's sealed folder missing or of another size than published ([] when intact or not
    sealed)."""
    return marker_damage(stage_path(recipe, name), hashes=False)


@dataclass(frozen=True)
class StagePlan:
    """What `pretrain run` would do with one stage now: `current` (skip), `missing` or `stale` (run), and why."""

    name: str
    status: str
    why: str

    @property
    def runs(self) -> bool:
        return self.status != "current"


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changed_inputs(before: dict, now: dict, limit: int = 3) -> list[str]:
    """`key: old -> new` for the inputs that differ (at most `limit`, then how many more)."""
    old, new = _flat(before), _flat(now)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys[:limit]]
    return shown + ([f"{len(keys) - limit} more"] if len(keys) > limit else [])


def stage_plans(recipe: Recipe) -> list[StagePlan]:
    """Every stage in pipeline order: whether `pretrain run` would skip or (re-)run it, and why."""
    plans: dict[str, StagePlan] = {}
    for name in STAGES:
        marker = read_marker(stage_path(recipe, name))
        rerun_upstream = [up for up in upstream_stages(recipe, name) if plans[up].runs]
        if marker is None:
            plans[name] = StagePlan(name, "missing", "not built yet")
        elif marker.get("fingerprint") == fingerprint(recipe, name):
            problems = damaged(recipe, name)
            why = f"damaged: {'; '.join(problems[:2])}" if problems else "up to date"
            plans[name] = StagePlan(name, "stale" if problems else "current", why)
        elif rerun_upstream:
            plans[name] = StagePlan(name, "stale", f"{' and '.join(rerun_upstream)} re-run(s) first")
        elif "inputs" in marker:
            changes = changed_inputs(marker["inputs"], stage_inputs(recipe, name))
            plans[name] = StagePlan(name, "stale", "; ".join(changes) or "its inputs changed")
        else:
            plans[name] = StagePlan(name, "stale", "the recipe changed since it was built")
    return list(plans.values())


def require_current(recipe: Recipe, name: str, needed_by: str) -> Path:
    """Return the stage's output folder, or raise a StageError telling the user what to run."""
    folder = stage_path(recipe, name)
    marker = read_marker(folder)
    if marker is None:
        raise StageError(
            f"{folder}: missing (run `pretrain {name} {recipe.source_label}` or `pretrain run` before `{needed_by}`)"
        )
    if marker.get("fingerprint") != fingerprint(recipe, name):
        raise StageError(
            f"{folder}: stale — the recipe or an upstream stage changed since it was built "
            f"(re-run `pretrain {name} {recipe.source_label}` or use `pretrain run`)"
        )
    problems = damaged(recipe, name)
    if problems:
        raise StageError(
            f"{folder}: damaged since it was built ({'; '.join(problems[:3])}); re-run `pretrain {name} "
            f"{recipe.source_label}` or use `pretrain run`"
        )
    return folder
