"""`pretrain plan`: the compute plan of a recipe, or a compute-optimal proposal for a budget.

pretrain plan recipes/smollm2-135m/config.yaml [--json] [--gpu a100 --mfu 0.35]
pretrain plan --budget-flops 1e21
pretrain plan --budget-gpu-hours 1000 --gpu h100 [--mfu 0.4]
"""

from __future__ import annotations

import json

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.progress import human
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.planning.flops import flops_per_token, gpu_spec
from pretrain.planning.memory import memory_per_device, strategy_from_accelerate
from pretrain.planning.scaling import chinchilla_tokens, compute_optimal, propose_shape
from pretrain.tokens.tokenizer import load_tokenizer, rounded_vocab


def _vocab(recipe: Recipe) -> tuple[int, str]:
    tok = recipe.layout.tokenizer
    if (tok / "tokenizer.json").exists():
        return len(load_tokenizer(tok)), f"from {tok}"
    return rounded_vocab(recipe.tokenizer.vocab_size), "tokenizer.vocab_size rounded to a multiple of 64"


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
    precision = cfg.precision if cfg.precision != "auto" else "bf16-mixed"
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
        "fits_in_memory": memory["total_gb"] < spec.memory_gb * 0.9,
    }


def propose(flops: float | None, gpu_hours: float | None, gpu: str, mfu: float) -> dict:
    spec = gpu_spec(gpu)
    if flops is None:
        flops = gpu_hours * 3600 * spec.bf16_tflops * 1e12 * mfu
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
            f"{hw['num_gpus']} GPU(s)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return f"plan for {p['recipe']} ({p['model_type']})\n" + "\n".join(
        f"  {k:<{width}}  {v}" for k, v in rows
    )


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
        result = propose(args.budget_flops, args.budget_gpu_hours, args.gpu or "h100", args.mfu or 0.4)
        print(json.dumps(result, indent=2) if args.json else _fmt_proposal(result))
        return 0
    if recipe is None:
        raise PretrainError("plan: give a RECIPE, or --budget-flops C / --budget-gpu-hours H --gpu NAME")
    result = plan_recipe(recipe, args.gpu, args.mfu)
    print(json.dumps(result, indent=2) if args.json else _fmt_recipe(result))
    return 0
