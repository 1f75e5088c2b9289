"""The base-model card (`final/README.md`), rendered from a Jinja template shipped in `model_cards/`.

Reads (all optional — a missing file shows as "n/a"): `curation_report.json` (mix table),
`tokenizer/tokenizer_report.json` (compression), the token manifest (token counts per source),
`metrics.jsonl` (loss curve, throughput), `evals/summary.json` (+ `learning_curves.png`). Front matter
follows the Hub's model-card metadata, including `model-index` with the final evaluation results.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from pretrain.config import HubSource, Recipe
from pretrain.config.checks import missing_template_problem
from pretrain.config.stages import stage_geometries
from pretrain.core.atomic import write_text_atomic
from pretrain.core.errors import RecipeError
from pretrain.core.layout import RunLayout
from pretrain.core.progress import human
from pretrain.core.recipe_files import TEMPLATE_SUFFIXES, find_card_template
from pretrain.evaluation.metrics import is_reported, split_key
from pretrain.evaluation.position_loss import position_loss_table
from pretrain.evaluation.records import read_eval_records
from pretrain.evaluation.regressions import find_regressions
from pretrain.modeling import count_parameters
from pretrain.scaling.cost import cost_of
from pretrain.scaling.forecast import Forecast
from pretrain.scaling.moe import active_non_embedding, moe_spec
from pretrain.scaling.plan import mix_origin, training_flops_by_stage
from pretrain.tokens.manifest import TokenManifest
from pretrain.train.metrics import (
    data_stage_shares,
    forecast_records,
    last_validation,
    mean_measured,
    read_records,
    restart_count,
    source_val_bpb,
    start_record,
    step_records,
    train_seconds,
    validation_records,
)
from pretrain.train.optim import describe_optimizers


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _metrics(layout: RunLayout) -> list[dict]:
    return read_records(layout.metrics)


def plot_loss(records: list[dict], path: Path) -> bool:
    train = [(r["tokens_seen"], r["loss"]) for r in step_records(records)]
    val = [(r["tokens_seen"], r["val/loss"]) for r in validation_records(records)]
    if not train:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def eval_results(summary: dict) -> list[EvalResult]:
    """The card's `model-index`: one result per (task, metric) of the final evaluation that the views show,
    against the Hub dataset the task reads (`Rowan/hellaswag`), or our task's name for a local/built-in task."""
    tasks = summary.get("tasks", {})
    results = []
    for key, value in summary.get("final", {}).items():
        if value is None or not is_reported(key):
            continue
        task, metric = split_key(key)
        facts = tasks.get(task, {})
        shots = facts.get("num_fewshot")
        results.append(
            EvalResult(
                task_type="text-generation",
                task_name="Text Generation",
                dataset_type=facts.get("dataset") or task,
                dataset_name=task,
                dataset_config=facts.get("config"),
                dataset_split=facts.get("split"),
                metric_type=metric,
                metric_value=round(float(value), 5),
                metric_name=f"{metric} ({shots}-shot)" if shots is not None else metric,
            )
        )
    return results


def forecast_and_regressions(layout: RunLayout, records: list[dict], non_emb: int, tokens: int) -> dict:
    """The card's forecast row (predicted vs actual final loss), its departures, and the eval regressions.

    `forecast` is None without a ladder fit; `regressions` maps "step:metric" to what regressed.
    """
    forecast, fit = Forecast.load(layout), None
    if forecast is not None and tokens:
        predicted = forecast.final(non_emb, tokens)
        fit = {
            "fit": str(layout.ladder_fit),
            "predicted": predicted.value,
            "low": predicted.low,
            "high": predicted.high,
            "actual": last_validation(records).get("val/loss"),
            "departures": [r for r in forecast_records(records) if r.get("outside")],
        }
    regressions = {f"{r.step}:{r.metric}": r.describe() for r in find_regressions(read_eval_records(layout))}
    return {"forecast": fit, "regressions": regressions}


def parent_model(records: list[dict]) -> dict | None:
    """Continued pretraining: the parent model, the revision asked for and the commit it resolved to."""
    return start_record(records).get("parent")


def parent_front_matter(parent: dict | None) -> dict:
    """The Hub's `base_model` metadata (links the model tree) for a model continued from a Hub model."""
    if not parent or parent.get("revision") is None:  # a local folder has no Hub id to link
        return {}
    return {"base_model": parent["model"], "base_model_relation": "finetune"}


def context_stage_rows(recipe: Recipe) -> list[dict]:
    """The data stages that extend the context or change the RoPE: name, seq_len, RoPE fields."""
    stages = enumerate(zip(recipe.train.data_stages, stage_geometries(recipe.train)))
    return [
        {"name": stage.name or f"stage-{i}", "seq_len": geo.seq_len, "rope": geo.rope}
        for i, (stage, geo) in stages
        if geo.seq_len != recipe.train.seq_len or geo.rope
    ]


def handbook_version() -> str:
    """The installed pretraining-handbook's version (the card names what trained the model)."""
    try:
        return importlib.metadata.version("pretraining-handbook")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree without installing
        return "(not installed)"


def card_context(recipe: Recipe, final_dir: Path) -> dict:
    layout = recipe.layout
    config = json.loads((final_dir / "config.json").read_text())
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(final_dir)
    total, non_emb = count_parameters(hf_config)
    records = _metrics(layout)
    steps = step_records(records)
    tokens = steps[-1]["tokens_seen"] if steps else 0
    seconds = train_seconds(steps, recipe.train.log_every)
    start = start_record(records)
    world = start.get("world_size", 1)
    on_gpu = "CPU" not in start.get("device", "CPU")
    summary = _json(layout.eval_summary_json)
    parent = parent_model(records)
    restarts = restart_count(records)
    stages = data_stage_shares(records)
    tokens_manifest = TokenManifest.read_optional(layout.tokens)
    hub_sources = [s.path for s in recipe.data.sources if isinstance(s, HubSource)]
    gpu_hours = seconds / 3600 * world if on_gpu and start else None
    # priced by the recipe's `plan` section, as `pretrain plan` prices a budget
    cost = cost_of(recipe.plan, gpu_hours) if gpu_hours else None
    return {
        "recipe": recipe.model_dump(mode="json"),  # plain data: a template reaches no method of ours
        "config": config,
        "params": total,
        "non_embedding_params": non_emb,
        "human": human,
        "curation": _json(layout.curation_report_json),
        "tokenizer_report": _json(layout.tokenizer / "tokenizer_report.json"),
        "tokens_manifest": tokens_manifest.to_json() if tokens_manifest else {},
        "tokens": tokens,
        "steps": steps[-1]["step"] if steps else 0,
        "flops": training_flops_by_stage(
            recipe, hf_config, active_non_embedding(hf_config) if moe_spec(hf_config) else non_emb, tokens
        ),
        "tokens_per_s": mean_measured(steps, "tokens_per_s"),
        "mfu": mean_measured(steps, "mfu"),
        "train_hours": seconds / 3600,
        "hardware": f"{world} x {start['device']}" if start else "n/a",
        "gpu_hours": gpu_hours,
        "cost": cost.as_dict() if cost else None,
        "final_val": last_validation(records),
        "final_val_sources": source_val_bpb(last_validation(records)),
        "mix_origin": mix_origin(recipe),
        "optimizers": describe_optimizers(recipe.train.optimizer),
        "precision": start.get("precision"),
        "evals": summary,
        "repo_id": recipe.hub.repo_id or f"your-name/{recipe.name}",
        "handbook_version": handbook_version(),
        "parent": parent,
        "restarts": restarts,
        "data_stages": stages,
        "context_stages": context_stage_rows(recipe),
        "position_loss": position_loss_table(summary),
        "data_stage_sources": list(dict.fromkeys(name for st in stages for name in st["realised"])),
        **forecast_and_regressions(layout, records, non_emb, tokens),
        "front_matter": ModelCardData(
            model_name=recipe.name,
            license=recipe.hub.license,
            library_name="transformers",
            pipeline_tag="text-generation",
            language=recipe.hub.language,
            tags=["pretrained", "base-model", "pretraining-handbook", *recipe.hub.tags],
            datasets=hub_sources or None,
            eval_results=eval_results(summary) or None,
            **parent_front_matter(parent),
        )
        .to_yaml()
        .strip(),
    }


def template_path(recipe: Recipe) -> Path:
    """`hub.card_template`: a template shipped in the package by name, else a path relative to the recipe."""
    path = find_card_template(recipe.hub.card_template, recipe.resolve_path)
    if path is None:
        raise RecipeError([missing_template_problem(recipe)])
    return path


def render_card(recipe: Recipe, template: Path, context: dict) -> str:
    """The card's text from `template`, rendered in Jinja's immutable sandbox (as transformers renders chat
    templates): recipes are shared, and a template from one must not run code. The context is plain data (the
    recipe as its JSON values) plus `human`; the loader serves only Jinja files of the template's own folder.
    A template that reaches for anything else, or does not parse, is a `RecipeError` naming it."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class TemplatesOnly(jinja2.FileSystemLoader):
        def get_source(self, environment, name):
            if not name.endswith(TEMPLATE_SUFFIXES):
                raise jinja2.TemplateNotFound(
                    f"{name} (only {'/'.join(TEMPLATE_SUFFIXES)} files are templates)"
                )
            return super().get_source(environment, name)

    env = ImmutableSandboxedEnvironment(
        loader=TemplatesOnly(str(template.parent)),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    try:
        return env.get_template(template.name).render(**context)
    except jinja2.TemplateError as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise RecipeError(
            [
                f"{recipe.source_label}: hub.card_template: {template}{where}: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]} — a card template reads the card's facts only (no attributes "
                "starting with _, no calls into Python, no other files); fix or replace the template"
            ]
        ) from None


def write_model_card(recipe: Recipe, final_dir: Path) -> Path:
    """Render `final_dir/README.md` and copy the loss and learning-curve images next to it."""
    final_dir = Path(final_dir)
    layout = recipe.layout
    template = template_path(recipe)
    has_loss = plot_loss(_metrics(layout), final_dir / "loss_curve.png")
    curves = layout.learning_curves
    if curves.exists():
        shutil.copy2(curves, final_dir / "learning_curves.png")
    context = {**card_context(recipe, final_dir), "has_loss_plot": has_loss, "has_curves": curves.exists()}
    text = render_card(recipe, template, context)
    path = final_dir / "README.md"
    write_text_atomic(path, text)  # a crash mid-write must not leave a truncated card to be pushed
    return path
