"""`pretrain mixture RECIPE`: choose the data mix by measurement.

    pretrain mixture recipes/mixture-cpu/config.yaml     # proxies -> mixture/proposal.json, report.md, recipe.yaml

1. The recipe's data stages run once (curate, tokenizer, pack; skipped when current): every proxy reads the same
   packed per-source shards.
2. The share bounds (scaling/mixture/bounds.py) come from the recipe's weights and each source's packed train
   tokens at the FULL run's length; `mixture.proxies` candidate mixes are drawn inside them, the recipe's own
   first. A target naming an unknown source or task, too few proxies, or a source too small for any share the
   bounds allow is one error here, before any proxy trains.
3. The proxies train one after another in this process (commands/mixture_proxies.py): finished ones are never
   retrained, so an interrupted search resumes where it stopped.
4. Each proxy's target components are read from its last validation (`val/<source>/bpb`) and evaluation
   (`eval/<task>/rc_bpb`) records; the components are fitted on the shares, the fit is cross-validated, and
   the mix that minimises the predicted target inside the bounds is proposed.

Outputs (in `<output_dir>/mixture/`): `proposal.json` and `report.md` (scaling/mixture/proposal.py owns them) and
`recipe.yaml`: the recipe with the proposed weights as its training mix (`train.data_stages`, drawn at load time
from the same packed tokens, with `weights_from` naming the proposal), in its own output folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from pretrain.commands.ladder import run_data_stages
from pretrain.commands.mixture_proxies import ProxyPlan, proxy_recipe, proxy_steps, train_proxy
from pretrain.commands.mixture_proxies import proxy_components as measured
from pretrain.config import Recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import MixtureError
from pretrain.core.progress import get_logger, human
from pretrain.evaluation.task_yaml import all_task_names
from pretrain.scaling.lr_transfer import RULE
from pretrain.scaling.mixture.bounds import MixBounds, mix_bounds
from pretrain.scaling.mixture.candidates import draw_candidates
from pretrain.scaling.mixture.optimise import propose_mix
from pretrain.scaling.mixture.proposal import (
    Proposal,
    ProxyResult,
    build_proposal,
    write_proposal,
    write_report,
)
from pretrain.scaling.mixture.regression import fit_mixture_model
from pretrain.scaling.mixture.target import Target
from pretrain.scaling.plan import mix_origin, plan_recipe
from pretrain.tokens.manifest import TokenManifest

log = get_logger("pretrain.mixture")


def check_mixture(recipe: Recipe) -> Target:
    """The search's target; one `MixtureError` for a target or proxy count that cannot work (before any data
    stage or proxy runs)."""
    cfg, label = recipe.mixture, recipe.source_label
    sources = [s.name for s in recipe.data.sources]
    tasks = all_task_names(recipe)
    if not cfg.target_sources and not cfg.target_tasks:
        raise MixtureError(
            f"{label}: mixture.target_sources and mixture.target_tasks are both empty; name what "
            "the mix is judged on (e.g. mixture.target_tasks: {arc_easy: 1})"
        )
    unknown = [s for s in cfg.target_sources if s not in sources]
    if unknown:
        raise MixtureError(
            f"{label}: mixture.target_sources names {', '.join(unknown)}, not a source of "
            f"data.sources ({', '.join(sources)})"
        )
    unknown = [t for t in cfg.target_tasks if t not in tasks]
    if unknown:
        raise MixtureError(
            f"{label}: mixture.target_tasks names {', '.join(unknown)}, not a task of eval.tasks or "
            f"eval.local_tasks ({', '.join(tasks) or 'none'}); add it there or fix the name"
        )
    prior = mix_origin(recipe)["weights"]
    if cfg.proxies < len(prior) + 2:
        raise MixtureError(
            f"{label}: mixture.proxies={cfg.proxies} is fewer than the {len(prior)} sources of the "
            f"mix + 2; raise it to at least {len(prior) + 2}"
        )
    proxy_steps(recipe)
    return Target.of(cfg.target_sources, cfg.target_tasks)


def search_bounds(recipe: Recipe, full_tokens: int) -> MixBounds:
    cfg = recipe.mixture
    manifest = TokenManifest.read(recipe.layout.tokens)
    available = {name: s.train_tokens for name, s in manifest.sources.items()}
    prior = mix_origin(recipe)["weights"]
    return mix_bounds(prior, available, full_tokens, cfg.max_repetition, cfg.band, cfg.floor)


def proxies_flops(recipe: Recipe, proxies: list[Recipe]) -> float:
    """All proxies' training FLOPs: the stem's whole run once (when there is one), and each proxy's part after it."""
    _, steps, stem_steps = proxy_steps(recipe)
    one = plan_recipe(proxies[0])["training_flops"]
    return (one if stem_steps else 0.0) + len(proxies) * one * (steps - stem_steps) / steps


def write_recipe(recipe: Recipe, proposal: Proposal, folder: Path) -> Path:
    """`mixture/recipe.yaml`: the recipe with the proposed weights (see the module docstring)."""
    values = recipe.values_as_run()
    values["name"] = f"{recipe.name}-mixture"
    values["output_dir"] = str(recipe.out.parent / f"{recipe.out.name}-mixture")
    origin = (
        f"pretrain mixture: {folder / 'proposal.json'} ({len(proposal.proxies)} proxies, cv Spearman "
        f"{proposal.cv_spearman if proposal.cv_spearman is None else round(proposal.cv_spearman, 3)}, predicted "
        f"target {proposal.predicted['target']:.4f} vs the recipe's {proposal.baseline['predicted']:.4f})"
    )
    stage = {"name": "mixture", "share": 1.0, "weights": dict(proposal.weights), "weights_from": origin}
    stages = values["train"].get("data_stages") or []
    if stages:
        stages[-1].update(weights=dict(proposal.weights), weights_from=origin)
    else:
        values["train"]["data_stages"] = [stage]
    header = f"# {recipe.name} with the data mix proposed by `pretrain mixture` ({folder / 'report.md'})\n"
    path = folder / "recipe.yaml"
    write_text_atomic(path, header + yaml.safe_dump(values, sort_keys=False))
    return path


def run_mixture(recipe: Recipe) -> Proposal:
    """The whole search (see the module docstring); returns the proposal written to `mixture/`."""
    target = check_mixture(recipe)
    cfg = recipe.mixture
    run_data_stages(recipe)
    full = plan_recipe(recipe)
    bounds = search_bounds(recipe, full["tokens"])
    X = draw_candidates(bounds, cfg.proxies, cfg.concentration, cfg.seed)
    prior = bounds.as_dict(bounds.prior)
    plans = [ProxyPlan(i, bounds.as_dict(x), stem=False) for i, x in enumerate(X)]
    proxies = [proxy_recipe(recipe, plan, prior) for plan in plans]
    stem = None
    if proxy_steps(recipe)[2]:
        stem_plan = ProxyPlan(-1, prior, stem=True)
        stem = proxy_recipe(recipe, stem_plan, prior)
        log.info("mixture: the stem (the recipe's mix, every proxy branches from it)")
        if not train_proxy(recipe, stem, stem_plan, None):
            log.info("mixture: the stem is up to date — skipping")
    fraction = proxies_flops(recipe, proxies) / full["training_flops"]
    proxy_plan = plan_recipe(proxies[0])
    log.info(
        "mixture: %d proxies of %s non-embedding params x %s tokens (%.1f%% of the full run's FLOPs)",
        len(plans),
        human(proxy_plan["non_embedding_params"]),
        human(proxy_plan["tokens"]),
        100 * fraction,
    )
    results = []
    for plan, proxy in zip(plans, proxies, strict=True):
        log.info(
            "mixture: proxy %d/%d %s: %s",
            plan.index + 1,
            len(plans),
            plan.name,
            ", ".join(f"{k} {v:.3f}" for k, v in plan.weights.items()),
        )
        if not train_proxy(recipe, proxy, plan, stem):
            log.info("mixture: proxy %s is up to date — skipping", plan.name)
        components = measured(proxy, plan, target.components)
        results.append(ProxyResult(plan.name, plan.weights, components, target.value(components)))
        log.info("mixture: proxy %s target %.4f", plan.name, results[-1].target)
    Y = np.array([[r.components[c] for c in target.components] for r in results])
    model = fit_mixture_model(X, Y, target.vector, target.components)
    proposed, _ = propose_mix(model, bounds, cfg.concentration, seed=cfg.seed)
    info = {
        "non_embedding_params": proxy_plan["non_embedding_params"],
        "tokens": proxy_plan["tokens"],
        "stem_fraction": cfg.stem_fraction,
        "flops_fraction": round(fraction, 4),
        "full_non_embedding_params": full["non_embedding_params"],
        "full_tokens": full["tokens"],
        "lr_rule": RULE,
    }
    proposal = build_proposal(model, bounds, target.components, target.weights, results, proposed, info)
    folder = recipe.layout.mixture
    write_proposal(folder, proposal)
    write_report(folder, proposal, model, bounds)
    write_recipe(recipe, proposal, folder)
    return proposal


def mixture(recipe: Recipe) -> int:
    """`pretrain mixture`: returns the exit code."""
    proposal = run_mixture(recipe)
    folder = recipe.layout.mixture
    print(
        f"mixture: proposed {', '.join(f'{k} {v:.3f}' for k, v in proposal.weights.items())} "
        f"(predicted target {proposal.predicted['target']:.4f}, the recipe's {proposal.baseline['predicted']:.4f}, "
        f"cv Spearman {proposal.cv_spearman}); {folder / 'proposal.json'}, {folder / 'report.md'}, "
        f"{folder / 'recipe.yaml'}"
    )
    return 0
