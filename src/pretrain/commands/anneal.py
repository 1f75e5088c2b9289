"""`pretrain anneal CKPT --output-dir DIR --tokens N --weight SOURCE=W ...`: branch a decay from a checkpoint.

    pretrain anneal outputs/tiny/checkpoints/step-0000120 --output-dir outputs/tiny-anneal-docs \\
        --tokens 327680 --weight stdlib_docs=3 --weight stdlib_code=1

How SmolLM2 ran its annealing ablations: take a checkpoint of the stable phase, and train on from it with
the learning rate decaying to its minimum over a new length, on a new mix. The anneal run is the
checkpoint's own resolved recipe (`trainer_state/recipe.yaml`) with:

- `train.steps` = the checkpoint's step + the anneal's steps; a WSD schedule whose decay is exactly the
  anneal (warmup unchanged, already done). The decay starts from the lr the checkpoint would have used
  next: a checkpoint taken in the stable phase decays from the peak; one taken mid-decay or on a cosine
  run gets its peak lrs scaled to that lr and `min_lr_ratio` rescaled so the final lr is unchanged.
- `train.data_stages` = [the steps before the branch (the checkpoint's run; not read again), `anneal`
  (the `--weight` mix)], drawn at load time from the per-source shards.
- `output_dir` = DIR, whose `mix/`, `tokenizer/` and `tokens/` are links to the checkpoint's run's (as the
  ladder's rungs link theirs): nothing is curated or packed again.

Training goes through the train stage like a ladder branch (`commands/derive.py`), resuming DIR's own newest
checkpoint when there is one, else starting from CKPT's weights, optimizer state and step
(`Trainer(branch_from=...)`, which also takes the checkpoint's RNG streams): cached, resumable and logged like
any run. `--set` overrides apply last. The anneal runs in one process unless `--set accelerate_config=PATH` (a
path relative to where it is started) asks for more: then, like `pretrain train`, it re-executes itself under
`accelerate launch` (`--num-processes N` to override the count, `--no-relaunch` to run here).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pretrain.commands.card import write_model_card
from pretrain.commands.derive import derive_recipe, set_length, train_derived
from pretrain.commands.launch import LaunchRequest, relaunch_if_asked
from pretrain.commands.run import stopped_before_the_end
from pretrain.config import Recipe, validate_recipe
from pretrain.core.dist import is_main_process
from pretrain.core.errors import PretrainError
from pretrain.core.progress import capture_run_output, get_logger
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import last_validation, read_records
from pretrain.train.schedules import lr_multiplier, warmup_steps

log = get_logger("pretrain.anneal")


class AnnealError(PretrainError):
    """The anneal cannot branch from this checkpoint as asked; the message says why and what to do."""


def parse_weights(items: list[str]) -> dict[str, float]:
    """`--weight NAME=W` items as {name: weight}; malformed or non-positive ones are an `AnnealError`."""
    weights = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not name or weight is None:
            raise AnnealError(f"--weight {item!r}: expected SOURCE=WEIGHT, e.g. --weight stdlib_docs=3")
        if not weight > 0:
            raise AnnealError(f"--weight {item}: the weight must be > 0 (leave a source out to skip it)")
        weights[name] = weight
    return weights


def _checkpoint_run(folder: Path) -> tuple[dict, dict]:
    """The checkpoint's resolved recipe (raw) and its state.json."""
    if not Path(folder).exists():  # pruned, or mistyped: say which ones exist
        raise AnnealError(ckpt.not_a_checkpoint(folder))
    problems = ckpt.damage(folder)
    if problems:
        raise AnnealError(f"{folder}: not an intact checkpoint ({'; '.join(problems[:3])}); pick another")
    ts = folder / ckpt.TRAINER_STATE
    raw = yaml.safe_load((ts / ckpt.RECIPE_YAML).read_text(encoding="utf-8"))
    state = json.loads((ts / ckpt.STATE_JSON).read_text(encoding="utf-8"))
    return raw, state


def anneal_recipe(
    checkpoint: Path,
    output_dir: Path,
    weights: dict[str, float],
    tokens: int | None = None,
    steps: int | None = None,
    overrides: list[str] | None = None,
) -> tuple[Recipe, Recipe]:
    """(the checkpoint's run's recipe, the anneal's recipe); see the module docstring."""
    checkpoint = Path(checkpoint).absolute()
    raw, state = _checkpoint_run(checkpoint)
    label = str(checkpoint / ckpt.TRAINER_STATE / ckpt.RECIPE_YAML)
    raw["output_dir"] = str(checkpoint.parent.parent)  # <run>/checkpoints/step-N: the run that wrote it
    raw["accelerate_config"] = None  # recipe-relative; the anneal runs where it is launched
    parent = validate_recipe(raw, source=label, check_files=False)
    cfg = parent.train
    branch, parent_total = int(state["step"]), int(state["total_steps"])
    if (tokens is None) == (steps is None):
        raise AnnealError("anneal: give the anneal's length as --tokens N or --steps N (one of them)")
    if tokens is not None:
        if tokens % cfg.global_batch_tokens or tokens <= 0:
            raise AnnealError(
                f"anneal: --tokens {tokens} is not a positive multiple of the run's global batch "
                f"({cfg.global_batch_tokens:,} tokens, train.global_batch_tokens)"
            )
        steps = tokens // cfg.global_batch_tokens
    if steps <= 0:
        raise AnnealError(f"anneal: --steps {steps} must be positive")
    warm = warmup_steps(cfg.schedule, parent_total)
    if branch < warm:
        raise AnnealError(
            f"{checkpoint}: step {branch} is inside the run's warmup ({warm} steps); branch from a checkpoint "
            "after the warmup"
        )
    if not weights:
        raise AnnealError("anneal: give the anneal mix as --weight SOURCE=WEIGHT (one per source it reads)")
    total = branch + steps
    lr_scale = lr_multiplier(branch, parent_total, cfg.schedule)  # the lr the checkpoint would use next
    if lr_scale <= 0:
        raise AnnealError(
            f"{checkpoint}: its run's lr is already 0 at step {branch}; branch from an earlier one"
        )
    before = (
        cfg.data_stages[-1].weights if cfg.data_stages else {s.name: s.weight for s in parent.data.sources}
    )

    def edit(raw: dict) -> None:
        set_length(raw, total)
        train = raw["train"]
        train["schedule"].update(
            name="wsd",
            warmup_steps=warm,
            decay_fraction=steps / total,
            min_lr_ratio=min(1.0, cfg.schedule.min_lr_ratio / lr_scale),
        )
        train["optimizer"]["lr"] = cfg.optimizer.lr * lr_scale
        train["optimizer"]["muon"]["lr"] = cfg.optimizer.muon.lr * lr_scale
        train["data_stages"] = [
            {"name": f"before-step-{branch}", "share": branch / total, "weights": dict(before)},
            {"name": "anneal", "share": 1.0 - branch / total, "weights": weights},
        ]

    return parent, derive_recipe(parent, Path(output_dir).absolute(), edit, overrides, source=label)


def run_anneal(
    checkpoint: Path,
    output_dir: Path,
    weights: dict[str, float],
    tokens: int | None = None,
    steps: int | None = None,
    overrides: list[str] | None = None,
    launch: LaunchRequest | None = None,
) -> Recipe:
    """Train the anneal (see the module docstring); returns its recipe."""
    parent, recipe = anneal_recipe(checkpoint, output_dir, weights, tokens, steps, overrides)
    relaunch_if_asked(recipe, launch)
    resume = "auto" if ckpt.list_checkpoints(recipe.layout.checkpoints) else "never"
    log.info(
        "anneal: %s -> %s: %d steps from step %d, lr from %.3g, mix %s",
        checkpoint,
        recipe.out,
        recipe.train.steps - parent_step(recipe),
        parent_step(recipe),
        recipe.train.optimizer.lr,
        ", ".join(f"{k}={v}" for k, v in weights.items()),
    )
    with capture_run_output(recipe.layout.log_file):  # libraries' bars and warnings: to the anneal's log
        train_derived(parent, recipe, resume, branch_from=Path(checkpoint))
    return recipe


def parent_step(recipe: Recipe) -> int:
    """The branch step of an anneal recipe (the end of its first stage)."""
    return recipe.train.stage_end_steps(recipe.train.steps)[0]


def anneal(
    checkpoint: Path,
    output_dir: Path | None,
    weight_items: list[str],
    tokens: int | None = None,
    steps: int | None = None,
    overrides: list[str] | None = None,
    launch: LaunchRequest | None = None,
) -> int:
    """`pretrain anneal`: train the branch (under the launcher its recipe asks for), then write its card."""
    if not output_dir:
        raise PretrainError("anneal: give --output-dir DIR (the anneal is a run of its own)")
    recipe = run_anneal(checkpoint, output_dir, parse_weights(weight_items), tokens, steps, overrides, launch)
    if stopped_before_the_end(recipe) or not is_main_process():
        return 0
    final = last_validation(read_records(recipe.layout.metrics))
    card = write_model_card(recipe, recipe.layout.final)
    print(
        f"anneal: {recipe.layout.final} (val loss {final.get('val/loss', 'n/a')}, bpb {final.get('val/bpb', 'n/a')}); "
        f"card {card}"
    )
    return 0
