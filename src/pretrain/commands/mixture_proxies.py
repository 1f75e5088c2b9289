"""The mixture search's proxies as runs: each proxy's recipe, its folder's identity, training and scoring.

A proxy is the recipe at the proxy size (`mixture.proxy_model`, lrs by scaling/lr_transfer.py's rule), trained
for `mixture.proxy_tokens` on one candidate mix: a derived run (commands/derive.py) in
`mixture/proxies/<name>/` whose data stages link to the recipe's, so no proxy curates or packs. Its mix is drawn
at load time with `train.data_stages`; every proxy has the same init and data order (the recipe's train seed:
common random numbers, so the proxies differ by their mix only).

With `mixture.stem_fraction` > 0 a stem run on the recipe's own mix saves a checkpoint at the end of its stable
phase, and every proxy, the recipe-mix one included, branches from it (`pretrain anneal`'s mechanism) and trains
only the rest on its own mix, with the decay. A branch starts every source at its first window (the loader's
`start_at_step`), re-reading what the stem read; a proxy that went on through the stem instead would read fresh
windows, which made the recipe-mix proxy 0.06 bits/byte better than every branch on the CPU recipe, far more than
the mixes' own spread: so all proxies branch, and all pay the same. A finished proxy (current `final/`) is never
retrained; an interrupted one resumes from its newest checkpoint; a folder that was trained as something else
(its train fingerprint changed) is emptied first.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass

from pretrain.commands.derive import derive_recipe, link_data_stages, set_length, train_derived
from pretrain.commands.stages import fingerprint, is_current
from pretrain.config import Recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import MixtureError, PretrainError
from pretrain.scaling.lr_transfer import scale_learning_rates
from pretrain.scaling.mixture.target import measured_components
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import last_validation, read_records

PROXY_RECORD = "PROXY.json"  # in a proxy's folder: what it is being trained as
STEM, MIX = "stem", "mix"


@dataclass(frozen=True)
class ProxyPlan:
    """One proxy: its name (index and a digest of its mix) and shares; `stem` for the stem run every proxy
    branches from."""

    index: int
    weights: dict[str, float]
    stem: bool

    @property
    def name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.weights, sort_keys=True).encode()).hexdigest()[:8]
        if self.stem:
            return "stem"
        return f"p{self.index:02d}-{'prior' if self.index == 0 else digest}"


def proxy_steps(recipe: Recipe) -> tuple[int, int, int]:
    """(global batch tokens, steps, stem steps) of every proxy."""
    cfg = recipe.mixture
    batch = cfg.proxy_global_batch_tokens or recipe.train.global_batch_tokens
    steps = cfg.proxy_tokens // batch
    if steps < 4:
        raise MixtureError(
            f"mixture.proxy_tokens={cfg.proxy_tokens:,} is fewer than 4 proxy batches of {batch:,} tokens; raise "
            "it or lower mixture.proxy_global_batch_tokens"
        )
    stem = int(round(cfg.stem_fraction * steps))
    return batch, steps, stem if 0 < stem < steps else 0


def proxy_recipe(recipe: Recipe, plan: ProxyPlan, prior: dict[str, float]) -> Recipe:
    """The recipe of one proxy (see the module docstring)."""
    cfg = recipe.mixture
    batch, steps, stem_steps = proxy_steps(recipe)

    def edit(raw: dict) -> None:
        raw["model"].update(cfg.proxy_model)
        scale_learning_rates(raw, recipe.model.hidden_size, raw["model"]["hidden_size"])
        set_length(raw, steps)
        train = raw["train"]
        micro = math.gcd(recipe.train.micro_batch_size, batch // recipe.train.seq_len)
        train.update(global_batch_tokens=batch, micro_batch_size=max(1, micro))
        train["validation"].update(every_fraction=1.0, batches=1, per_source_batches=cfg.val_batches)
        mix = {"name": MIX, "weights": dict(plan.weights), "share": 1.0}
        if stem_steps:
            mix["share"] = 1 - stem_steps / steps
            train["data_stages"] = [{"name": STEM, "share": stem_steps / steps, "weights": dict(prior)}, mix]
            # the stem's checkpoint is the end of the stable phase: every proxy decays over its own mix
            train["schedule"].update(
                name="wsd", decay_fraction=(steps - stem_steps) / steps, warmup_steps=None
            )
        else:
            train["data_stages"] = [mix]
        every = stem_steps if plan.stem and stem_steps else steps
        keep = steps // every + 1  # the stem keeps its branch point
        train["checkpoint"].update(
            every_steps=every, every_fraction=None, keep_last=keep, save_optimizer=bool(stem_steps)
        )
        tasks = set(cfg.target_tasks)
        ev = raw["eval"]
        ev.update(enabled=bool(tasks), every_fraction=1.0, rc_bpb=True, limit=cfg.task_limit)
        # eval.tasks and local_tasks stay: curation decontaminates against them (part of the data's fingerprint)
        raw["hub"]["push_checkpoints"] = False

    return derive_recipe(recipe, recipe.layout.mixture_proxy(plan.name), edit)


def stem_checkpoint(recipe: Recipe, stem: Recipe):
    """The stem's checkpoint every other proxy branches from (None without a stem)."""
    _, _, stem_steps = proxy_steps(recipe)
    return stem.layout.checkpoint(stem_steps) if stem_steps else None


def _tidy(proxy: Recipe, identity: dict) -> None:
    record = proxy.layout.root / PROXY_RECORD
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = None
    if previous != identity:
        for stale in (proxy.layout.final, proxy.layout.checkpoints, proxy.layout.evals):
            shutil.rmtree(stale, ignore_errors=True)
        proxy.layout.metrics.unlink(missing_ok=True)
        proxy.layout.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(record, json.dumps(identity))


def train_proxy(recipe: Recipe, proxy: Recipe, plan: ProxyPlan, stem: Recipe | None) -> bool:
    """Train one proxy unless it is current; True when it trained now."""
    link_data_stages(recipe, proxy)
    branch = stem_checkpoint(recipe, stem) if stem is not None and not plan.stem else None
    identity = {"fingerprint": fingerprint(proxy, "train")}
    if branch is not None:
        identity["branch_of"] = fingerprint(stem, "train")
    _tidy(proxy, identity)
    if is_current(proxy, "train"):
        return False
    if branch is not None and not ckpt.is_complete(branch):
        raise MixtureError(
            f"mixture proxy {plan.name}: the stem's checkpoint {branch} is missing; delete "
            f"{stem.layout.final} and re-run `pretrain mixture`"
        )
    resume = "auto" if ckpt.list_checkpoints(proxy.layout.checkpoints) else "never"
    try:
        train_derived(recipe, proxy, resume, branch_from=branch if resume == "never" else None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a proxy is reported as that proxy's
        detail = str(exc) if isinstance(exc, PretrainError) else f"{type(exc).__name__}: {exc}"
        raise MixtureError(
            f"mixture proxy {plan.name} failed in {proxy.layout.root}: {detail}. Finished proxies are kept; fix "
            "the cause and re-run `pretrain mixture`"
        ) from exc
    return True


def proxy_components(proxy: Recipe, plan: ProxyPlan, wanted: list[str]) -> dict[str, float]:
    """The target's components a finished proxy measured (its last validation and evaluation records)."""
    records = read_records(proxy.layout.metrics)
    evaluation = next((r for r in reversed(records) if any(k.startswith("eval/") for k in r)), {})
    measured = measured_components(last_validation(records), evaluation)
    missing = [c for c in wanted if c not in measured]
    if missing:
        raise MixtureError(
            f"mixture proxy {plan.name}: {proxy.layout.metrics} has no {', '.join(missing)} (a source with no val "
            "documents, or a task that is neither multiple choice nor cloze); fix the target and re-run"
        )
    return {c: measured[c] for c in wanted}
