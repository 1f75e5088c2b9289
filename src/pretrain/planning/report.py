"""`pretrain plan`: the compute plan of a recipe, or a compute-optimal proposal for a budget.

pretrain plan recipes/smollm2-135m/config.yaml [--json] [--gpu a100 --mfu 0.35]
pretrain plan recipes/tiny/config.yaml --budget-flops 1e15     # with a ladder fit: the fit's optimum
pretrain plan --budget-flops 1e21
pretrain plan --budget-gpu-hours 1000 --gpu h100 [--mfu 0.4]

When the recipe's run folder holds a ladder fit (`pretrain ladder`), the plan adds the recipe's own
law: the compute-optimal split of the budget (the recipe's compute, or --budget-*) beside Chinchilla's
20 tokens per parameter, a shape of the recipe's family for it, the predicted final validation loss and
bits per byte with intervals, GPU-hours and dollars (`plan.usd_per_gpu_hour`).
"""

from __future__ import annotations

import json

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.progress import human
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.planning.fit_law import Estimate
from pretrain.planning.fit_law import compute_optimal as fitted_optimum
from pretrain.planning.flops import budget_flops, flops_per_token, gpu_spec
from pretrain.planning.forecast import Forecast
from pretrain.planning.ladder import Family, LadderError, recipe_vocab, rung_config
from pretrain.planning.memory import memory_per_device, strategy_from_accelerate
from pretrain.planning.scaling import TOKENS_PER_PARAM, chinchilla_tokens, compute_optimal, propose_shape

_vocab = recipe_vocab


def _estimate(e: Estimate) -> dict:
    return {"value": e.value, "low": e.low, "high": e.high}


def _dollars(usd: float) -> str:
    return f"${usd:,.0f}" if usd >= 100 else f"${usd:.2g}"


def _usd(recipe: Recipe, gpu_hours: float) -> float | None:
    price = recipe.plan.usd_per_gpu_hour
    return gpu_hours * price if price else None


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
    tokens = flops / (6.0 * non_emb)
    loss = forecast.final(non_emb, tokens)
    gpu_hours = (
        flops_per_token(config, non_emb, recipe.train.seq_len)
        * tokens
        / (spec.bf16_tflops * 1e12 * mfu)
        / 3600
    )
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
    }


def plan_recipe(recipe: Recipe, gpu: str | None = None, mfu: float | None = None) -> dict:
    vocab, vocab_source = _vocab(recipe)
    config = build_hf_config(recipe, vocab)
    total, non_emb = count_parameters(config)
    cfg = recipe.train
    steps = cfg.total_steps(total)
    tokens = steps * cfg.global_batch_tokens
    fpt = flops_per_token(config, non_emb, cfg.seq_len)
    flops = fpt * tokens
    strategy = strategy_from_accelerate(recipe.accelerate_settings())
    spec = gpu_spec(gpu or recipe.plan.gpu)
    mfu = mfu or recipe.plan.mfu
    n_gpus = recipe.plan.num_gpus
    gpu_hours = flops / (spec.bf16_tflops * 1e12 * mfu) / 3600
    precision = "bf16-mixed" if cfg.precision in ("auto", "bf16-mixed-if-native") else cfg.precision
    memory = memory_per_device(
        total,
        config.num_hidden_layers,
        config.hidden_size,
        vocab,
        cfg.seq_len,
        cfg.micro_batch_size,
        precision,
        recipe.model.gradient_checkpointing,
        strategy,
    )
    optimal = chinchilla_tokens(total)
    forecast = Forecast.load(recipe.layout)
    predicted = forecast.final(non_emb, tokens) if forecast else None
    try:
        accum = cfg.grad_accum_steps(strategy.world_size)
    except ValueError:
        accum = None
    return {
        "recipe": recipe.name,
        "model_type": recipe.model.model_type,
        "vocab_size": vocab,
        "vocab_source": vocab_source,
        "params": total,
        "non_embedding_params": non_emb,
        "tokens": tokens,
        "steps": steps,
        "global_batch_tokens": cfg.global_batch_tokens,
        "seq_len": cfg.seq_len,
        "launch": {"strategy": strategy.name, "world_size": strategy.world_size, "grad_accum": accum},
        "flops_per_token": fpt,
        "training_flops": flops,
        "flops_6nd": 6 * total * tokens,
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
        "fits_in_memory": memory["total_gb"] < spec.memory_gb * 0.9,
        "predicted_loss": _estimate(predicted) if predicted else None,
        "predicted_bpb": (
            {k: forecast.bpb(v) for k, v in _estimate(predicted).items()}
            if predicted and forecast.bpb(1.0)
            else None
        ),
        "ladder": forecast_plan(recipe, forecast, 6.0 * non_emb * tokens, gpu, mfu) if forecast else None,
    }


def propose(flops: float | None, gpu_hours: float | None, gpu: str, mfu: float) -> dict:
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
        "tokens_for_shape": 20 * exact,
    }


def _fmt_recipe(p: dict) -> str:
    m, hw = p["memory_per_device"], p["hardware"]
    rows = [
        (
            "parameters",
            f"{p['params']:,} ({human(p['params'])}); non-embedding {p['non_embedding_params']:,}",
        ),
        ("vocab", f"{p['vocab_size']:,} ({p['vocab_source']})"),
        (
            "tokens",
            f"{p['tokens']:,} ({human(p['tokens'])}) = {p['steps']:,} steps x {p['global_batch_tokens']:,}",
        ),
        (
            "tokens / param",
            f"{p['tokens_per_param']:.1f} (Chinchilla-optimal: {human(p['chinchilla_optimal_tokens'])} tokens, "
            f"this run is {p['tokens_vs_chinchilla']:.2f}x)",
        ),
        (
            "launch",
            f"{p['launch']['strategy']} x {p['launch']['world_size']}, grad accum {p['launch']['grad_accum']}",
        ),
        (
            "training FLOPs",
            f"{p['training_flops']:.3g} (6ND alone: {p['flops_6nd']:.3g}; {p['flops_per_token']:.3g}/token)",
        ),
        (
            "memory / device",
            f"{m['total_gb']} GiB = weights {m['weights_gb']} + grads {m['grads_gb']} + optimizer "
            f"{m['optimizer_gb']} + activations {m['activations_gb']}"
            + ("" if p["fits_in_memory"] else f"  (exceeds {hw['gpu_memory_gb']} GB: shard or checkpoint)"),
        ),
        (
            "GPU-hours",
            f"{p['gpu_hours']:.3g} on {hw['gpu']} at {hw['mfu']:.0%} MFU -> {p['wall_clock_hours']:.3g} h on "
            f"{hw['num_gpus']} GPU(s)" + (f", {_dollars(p['usd'])}" if p["usd"] is not None else ""),
        ),
    ]
    if p["predicted_loss"]:
        rows.append(("forecast", "final val loss " + _fmt_estimate(p["predicted_loss"], p["predicted_bpb"])))
    else:
        rows.append(("forecast", "none (run `pretrain ladder` on this recipe to fit its own scaling law)"))
    width = max(len(k) for k, _ in rows)
    text = f"plan for {p['recipe']} ({p['model_type']})\n" + "\n".join(
        f"  {k:<{width}}  {v}" for k, v in rows
    )
    return text + ("\n" + _fmt_ladder(p["ladder"]) if p["ladder"] else "")


def _fmt_estimate(loss: dict, bpb: dict | None) -> str:
    text = f"{loss['value']:.4f} [{loss['low']:.4f}, {loss['high']:.4f}] nats/token"
    if bpb:
        text += f", {bpb['value']:.4f} [{bpb['low']:.4f}, {bpb['high']:.4f}] bits/byte"
    return text


def _extrapolation(forecast, params: float, tokens: float) -> dict | None:
    """Size and tokens of a prediction as multiples of the ladder's largest rung and longest run."""
    if forecast.record is None or not forecast.record.rungs:
        return None
    rungs = forecast.record.rungs
    return {
        "params": params / max(r.run.non_embedding_params for r in rungs),
        "tokens": tokens / max(r.run.tokens for r in rungs),
    }


def _fmt_extrapolation(x: dict | None) -> str:
    if not x or (x["params"] <= 1 and x["tokens"] <= 1):
        return ""
    return f" ({x['params']:.2g}x the ladder's largest size, {x['tokens']:.2g}x its longest run's tokens)"


def _fmt_ladder(f: dict) -> str:
    law, s = f["law"], f["shape"]
    n, d, tpp = f["optimal_non_embedding_params"], f["optimal_tokens"], f["optimal_tokens_per_param"]
    c = f["chinchilla"]
    rows = [
        (
            "law",
            f"L = {law['E']:.4g} + {law['A']:.4g}/N^{law['alpha']:.3f} + {law['B']:.4g}/D^{law['beta']:.3f}  ({f['fit']})",
        ),
        (
            "compute-optimal",
            f"{human(n['value'])} [{human(n['low'])}, {human(n['high'])}] non-embedding params on "
            f"{human(d['value'])} [{human(d['low'])}, {human(d['high'])}] tokens = {tpp['value']:.3g} "
            f"[{tpp['low']:.3g}, {tpp['high']:.3g}] tokens/param",
        ),
        (
            "Chinchilla",
            f"{human(c['params'])} params on {human(c['tokens'])} tokens = {c['tokens_per_param']:g} tokens/param",
        ),
        (
            "proposed shape",
            f"{s['num_hidden_layers']} layers x {s['hidden_size']} hidden, {s['num_attention_heads']} heads, "
            f"mlp {s['intermediate_size']}: {f['shape_non_embedding_params']:,} non-embedding "
            f"({f['shape_params']:,} total) on {human(f['shape_tokens'])} tokens",
        ),
        (
            "predicted loss",
            _fmt_estimate(f["predicted_loss"], f["predicted_bpb"])
            + _fmt_extrapolation(f.get("extrapolation")),
        ),
        (
            "cost",
            f"{f['gpu_hours']:.3g} GPU-hours on {f['gpu']} at {f['mfu']:.0%} MFU"
            + (
                f", {_dollars(f['usd'])}"
                if f["usd"] is not None
                else " (set plan.usd_per_gpu_hour for dollars)"
            ),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    head = f"under this recipe's ladder fit, for {f['budget_flops']:.3g} FLOPs (6·N·D, N non-embedding):"
    return head + "\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _fmt_proposal(p: dict) -> str:
    s = p["shape"]
    return (
        f"budget {p['budget_flops']:.3g} FLOPs (= {p['gpu_hours']:.4g} GPU-hours on {p['gpu']} at {p['mfu']:.0%} MFU)\n"
        f"  compute-optimal: {human(p['optimal_params'])} parameters trained on {human(p['optimal_tokens'])} tokens [{p['fit']}]\n"
        f"  proposed llama shape: {s['num_hidden_layers']} layers x {s['hidden_size']} hidden, {s['num_attention_heads']} heads "
        f"({s['num_key_value_heads']} kv), intermediate {s['intermediate_size']}, vocab {s['vocab_size']}, "
        f"tied={s['tie_word_embeddings']}\n"
        f"  exact parameters of that shape: {p['shape_params']:,} -> train on {human(p['tokens_for_shape'])} tokens"
    )


def run_plan_command(args, recipe: Recipe | None) -> int:
    if args.budget_flops is not None or args.budget_gpu_hours is not None:
        if args.budget_gpu_hours is not None and not args.gpu:
            raise PretrainError("plan: --budget-gpu-hours needs --gpu (e.g. --gpu h100)")
        for name in ("budget_flops", "budget_gpu_hours"):
            value = getattr(args, name)
            if value is not None and value <= 0:
                raise PretrainError(f"plan: --{name.replace('_', '-')} must be positive, got {value}")
        forecast = Forecast.load(recipe.layout) if recipe is not None else None
        if forecast is not None:  # the recipe's own law for this budget
            mfu = args.mfu or recipe.plan.mfu
            flops = budget_flops(args.budget_flops, args.budget_gpu_hours, args.gpu, mfu)
            result = forecast_plan(recipe, forecast, flops, args.gpu, args.mfu)
            print(json.dumps(result, indent=2) if args.json else _fmt_ladder(result))
            return 0
        result = propose(args.budget_flops, args.budget_gpu_hours, args.gpu or "h100", args.mfu or 0.4)
        print(json.dumps(result, indent=2) if args.json else _fmt_proposal(result))
        return 0
    if recipe is None:
        raise PretrainError("plan: give a RECIPE, or --budget-flops C / --budget-gpu-hours H --gpu NAME")
    result = plan_recipe(recipe, args.gpu, args.mfu)
    print(json.dumps(result, indent=2) if args.json else _fmt_recipe(result))
    return 0
