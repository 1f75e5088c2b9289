"""The compute plan of a recipe, and a compute-optimal proposal for a budget (what `pretrain plan` prints).

    plan_recipe(recipe)                 parameters, tokens, FLOPs, memory per device, GPU-hours, the forecast
    propose(flops, None, "h100", 0.4)   Chinchilla's size and tokens for a budget, and a shape for them
    forecast_plan(recipe, forecast, C)  the recipe's own fitted law (`pretrain ladder`) for a budget of C FLOPs

When the recipe's run folder holds a ladder fit, the plan adds the recipe's own law: the compute-optimal split
of the budget beside Chinchilla's 20 tokens per parameter, a shape of the recipe's family for it, the predicted
final validation loss and bits per byte with intervals, GPU-hours and dollars (`plan.usd_per_gpu_hour`).
"""

from __future__ import annotations

from pretrain.config import Recipe
from pretrain.config.stages import stage_geometries
from pretrain.modeling import build_hf_config, count_parameters, muon_parameter_count
from pretrain.scaling.chinchilla import TOKENS_PER_PARAM, chinchilla_tokens, compute_optimal, propose_shape
from pretrain.scaling.cost import cost_of
from pretrain.scaling.family import Family
from pretrain.scaling.flops import budget_flops, flops_per_token, gpu_spec
from pretrain.scaling.forecast import Forecast
from pretrain.scaling.ladder import LadderError, recipe_vocab, rung_config
from pretrain.scaling.law import Estimate
from pretrain.scaling.law import compute_optimal as fitted_optimum
from pretrain.scaling.memory import memory_per_device, strategy_name
from pretrain.scaling.mesh_plan import launch_mesh, propose_mesh
from pretrain.scaling.moe import active_non_embedding, moe_spec


def _estimate(e: Estimate) -> dict:
    return {"value": e.value, "low": e.low, "high": e.high}


def _usd(recipe: Recipe, gpu_hours: float) -> float | None:
    """The run's total cost in dollars (GPU-hours priced by the recipe, plus engineering; scaling/cost.py)."""
    cost = cost_of(recipe.plan, gpu_hours)
    return cost.total if cost else None


def _cost(recipe: Recipe, gpu_hours: float) -> dict | None:
    cost = cost_of(recipe.plan, gpu_hours)
    return cost.as_dict() if cost else None


def forecast_plan(
    recipe: Recipe, forecast: Forecast, flops: float, gpu: str | None, mfu: float | None
) -> dict:
    """The ladder fit's view of a budget of `flops` (6·N·D, N non-embedding) for this recipe's family."""
    spec, mfu = gpu_spec(gpu or recipe.plan.gpu), mfu or recipe.plan.mfu
    record = forecast.record
    if record is not None and flops < record.smallest_rung_flops:
        raise LadderError(
            f"plan: the budget {flops:.3g} FLOPs is below the ladder's smallest rung "
            f"({record.smallest_rung_flops:.3g} FLOPs, {recipe.layout.ladder_record}); the fit does not "
            "reach down there: raise the budget or run a ladder of smaller rungs"
        )
    optimum = fitted_optimum(forecast.fit, flops)
    vocab, _ = recipe_vocab(recipe)
    _, recipe_non_emb = count_parameters(build_hf_config(recipe, vocab))
    family = Family.of(recipe, grow=optimum.params.value > recipe_non_emb)
    shape = family.closest(optimum.params.value, recipe_non_emb)
    config = rung_config(recipe, shape, vocab)
    total, non_emb = count_parameters(config)
    # the budget buys the tokens at the recipe's own cost per token, attention included (6·N·D alone left it
    # out: the plan overshot its budget by the attention share, ~12% at seq 2048)
    tokens = flops / flops_per_token(config, non_emb, recipe.train.seq_len)
    loss = forecast.final(non_emb, tokens)
    gpu_hours = flops / (spec.bf16_tflops * 1e12 * mfu) / 3600
    chinchilla_params, chinchilla_d = compute_optimal(flops)
    law = forecast.fit.law
    return {
        "fit": str(recipe.layout.ladder_fit),
        "law": {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta},
        "intervals": {name: _estimate(e) for name, e in forecast.fit.intervals.items()},
        "budget_flops": flops,
        "optimal_non_embedding_params": _estimate(optimum.params),
        "optimal_tokens": _estimate(optimum.tokens),
        "optimal_tokens_per_param": _estimate(optimum.tokens_per_param),
        "chinchilla": {
            "params": chinchilla_params,
            "tokens": chinchilla_d,
            "tokens_per_param": TOKENS_PER_PARAM,
        },
        "shape": {"model_type": recipe.model.model_type, **shape.model_fields()},
        "shape_params": total,
        "shape_non_embedding_params": non_emb,
        "shape_tokens": tokens,
        "predicted_loss": _estimate(loss),
        # how far past the rungs the prediction reaches: the tiny ladder showed that extrapolating in tokens
        # is what fails first (rungs of 50-100 steps forecast a 200-step run 16 % high)
        "extrapolation": _extrapolation(forecast, non_emb, tokens),
        "predicted_bpb": {k: forecast.bpb(v) for k, v in _estimate(loss).items()}
        if forecast.bpb(1.0)
        else None,
        "gpu": spec.name,
        "mfu": mfu,
        "gpu_hours": gpu_hours,
        "usd": _usd(recipe, gpu_hours),
        "cost": _cost(recipe, gpu_hours),
    }


def mix_origin(recipe: Recipe) -> dict:
    """The recipe's training mix and where its weights came from: `{"weights": {source: share}, "from": str}`
    (the last data stage's, else data.sources' weights)."""
    if recipe.train.data_stages:
        stage = recipe.train.data_stages[-1]
        origin = stage.weights_from or "set by hand (train.data_stages)"
        return {"weights": {k: round(v, 4) for k, v in stage.weight_shares().items()}, "from": origin}
    total = sum(s.weight for s in recipe.data.sources)
    weights = {s.name: round(s.weight / total, 4) for s in recipe.data.sources}
    return {"weights": weights, "from": "set by hand (data.sources weights)"}


def plan_recipe(
    recipe: Recipe, gpu: str | None = None, mfu: float | None = None, gpus: int | None = None
) -> dict:
    """The plan's figures; with `gpus`, also the device mesh proposed for that many GPUs (`mesh_plan.py`)."""
    vocab, vocab_source = recipe_vocab(recipe)
    config = build_hf_config(recipe, vocab)
    total, non_emb = count_parameters(config)
    active = active_non_embedding(config) if moe_spec(config) else non_emb  # a mixture of experts: per token
    cfg = recipe.train
    steps = cfg.total_steps(total)
    tokens = steps * cfg.global_batch_tokens
    fpt = flops_per_token(config, active, cfg.seq_len)
    flops = training_flops_by_stage(recipe, config, active, tokens)
    mesh = launch_mesh(recipe)
    spec = gpu_spec(gpu or recipe.plan.gpu)
    mfu = mfu or recipe.plan.mfu
    n_gpus = recipe.plan.num_gpus
    gpu_hours = flops / (spec.bf16_tflops * 1e12 * mfu) / 3600
    precision = "bf16-mixed" if cfg.precision in ("auto", "bf16-mixed-if-native") else cfg.precision
    muon_params = muon_parameter_count(config) if cfg.optimizer.name == "muon" else 0
    memory = memory_per_device(
        total,
        config.num_hidden_layers,
        config.hidden_size,
        vocab,
        cfg.seq_len,
        cfg.micro_batch_size,
        precision,
        recipe.model.gradient_checkpointing,
        mesh,
        muon_params=muon_params,
    )
    optimal = chinchilla_tokens(total)
    forecast = Forecast.load(recipe.layout)
    predicted = forecast.final(non_emb, tokens) if forecast else None
    try:
        accum = cfg.grad_accum_steps(mesh.dp)
    except ValueError:
        accum = None
    return {
        "recipe": recipe.name,
        "model_type": recipe.model.model_type,
        "mix": mix_origin(recipe),
        "vocab_size": vocab,
        "vocab_source": vocab_source,
        "params": total,
        "non_embedding_params": non_emb,
        "active_params": total - non_emb + active,
        "active_non_embedding_params": active,
        "tokens": tokens,
        "steps": steps,
        "global_batch_tokens": cfg.global_batch_tokens,
        "seq_len": cfg.seq_len,
        "launch": {
            "strategy": strategy_name(mesh),
            "world_size": mesh.world,
            "mesh": mesh.sizes(),
            "grad_accum": accum,
        },
        "flops_per_token": fpt,
        "training_flops": flops,
        "flops_6nd": 6 * (total - non_emb + active) * tokens,
        "chinchilla_optimal_tokens": optimal,
        "tokens_per_param": tokens / total,
        "tokens_vs_chinchilla": tokens / optimal,
        "memory_per_device": memory,
        "hardware": {
            "gpu": spec.name,
            "gpu_memory_gb": spec.memory_gb,
            "num_gpus": n_gpus,
            "mfu": mfu,
            "peak_bf16_tflops": spec.bf16_tflops,
        },
        "gpu_hours": gpu_hours,
        "wall_clock_hours": gpu_hours / n_gpus,
        "usd": _usd(recipe, gpu_hours),
        "cost": _cost(recipe, gpu_hours),
        "fits_in_memory": memory["total_gb"] < spec.memory_gb * 0.9,
        "predicted_loss": _estimate(predicted) if predicted else None,
        "predicted_bpb": (
            {k: forecast.bpb(v) for k, v in _estimate(predicted).items()}
            if predicted and forecast.bpb(1.0)
            else None
        ),
        "ladder": forecast_plan(recipe, forecast, 6.0 * non_emb * tokens, gpu, mfu) if forecast else None,
        "mesh_proposal": propose_mesh(
            recipe, config, total, precision, gpus, spec.memory_gb, muon_params=muon_params
        )
        if gpus
        else None,
    }


def training_flops_by_stage(recipe: Recipe, config, active_non_embedding_params: int, tokens: int) -> float:
    """Training FLOPs of `tokens` tokens, each data stage's share at its own sequence length (attention's
    term grows with it: a context-extension stage costs more per token)."""
    cfg = recipe.train
    if not cfg.data_stages:
        return flops_per_token(config, active_non_embedding_params, cfg.seq_len) * tokens
    return sum(
        share * tokens * flops_per_token(config, active_non_embedding_params, geometry.seq_len)
        for share, geometry in zip(cfg.stage_shares(), stage_geometries(cfg))
    )


def propose(
    flops: float | None, gpu_hours: float | None, gpu: str, mfu: float, seq_len: int | None = None
) -> dict:
    """Chinchilla's optimum for a budget and a llama shape for it. With `seq_len` (a recipe's) the shape's
    tokens are what the budget buys at its full cost per token, attention included; without, 20 per parameter
    (6·N·D leaves attention out: at seq 2048 such a plan overshot its budget by ~12%)."""
    spec = gpu_spec(gpu)
    flops = budget_flops(flops, gpu_hours, gpu, mfu)
    n_opt, d_opt = compute_optimal(flops)
    shape = propose_shape(n_opt)
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "llama",
        **{k: v for k, v in shape.as_model_fields().items() if k != "model_type"},
        vocab_size=shape.vocab_size,
    )
    exact, non_emb = count_parameters(config)
    return {
        "budget_flops": flops,
        "gpu": spec.name,
        "mfu": mfu,
        "gpu_hours": flops / (spec.bf16_tflops * 1e12 * mfu) / 3600,
        "optimal_params": n_opt,
        "optimal_tokens": d_opt,
        "fit": "Hoffmann et al. 2022, approach 1 (D = 20 N, C = 6 N D)",
        "shape": {**shape.as_model_fields(), "vocab_size": shape.vocab_size},
        "shape_params": exact,
        "shape_non_embedding_params": non_emb,
        "tokens_for_shape": flops / flops_per_token(config, non_emb, seq_len) if seq_len else 20 * exact,
        "tokens_counted": f"budget / FLOPs per token at seq {seq_len} (attention included)"
        if seq_len
        else "20 per parameter",
    }


def _extrapolation(forecast, params: float, tokens: float) -> dict | None:
    """Size and tokens of a prediction as multiples of the ladder's largest rung and longest run."""
    if forecast.record is None or not forecast.record.rungs:
        return None
    rungs = forecast.record.rungs
    return {
        "params": params / max(r.run.non_embedding_params for r in rungs),
        "tokens": tokens / max(r.run.tokens for r in rungs),
    }
