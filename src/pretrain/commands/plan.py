"""`pretrain plan`: the compute plan of a recipe, or a compute-optimal proposal for a budget.

pretrain plan recipes/smollm2-135m/config.yaml [--json] [--gpu a100 --mfu 0.35]
pretrain plan recipes/tiny/config.yaml --budget-flops 1e15     # with a ladder fit: the fit's optimum
pretrain plan --budget-flops 1e21
pretrain plan --budget-gpu-hours 1000 --gpu h100 [--mfu 0.4]
pretrain plan recipes/smollm2-135m/config.yaml --budget-usd 100000   # priced by the recipe's plan section
pretrain plan recipes/llama-3.1-8b/config.yaml --gpus 64      # the device mesh (FSDP x TP) that fits

The figures are `scaling/plan.py`'s; this module checks the command's options and prints them as a table
(or JSON).
"""

from __future__ import annotations

import json

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError
from pretrain.core.progress import human
from pretrain.scaling.cost import cost_of, gpu_hours_for
from pretrain.scaling.flops import budget_flops as flops_of_budget
from pretrain.scaling.forecast import Forecast
from pretrain.scaling.plan import forecast_plan, plan_recipe, propose


def _dollars(usd: float) -> str:
    return f"${usd:,.0f}" if usd >= 100 else f"${usd:.2g}"


def _fmt_cost(cost: dict | None) -> list[tuple[str, str]]:
    """The cost rows: each item, then the total (none for a GPU rental alone: the GPU-hours row prices it)."""
    if not cost or len(cost["items"]) < 2:
        return []
    rows = [("  " + what, _dollars(usd)) for what, usd in cost["items"]]
    return [*rows, ("cost, total", _dollars(cost["total_usd"]))]


def _fmt_recipe(p: dict) -> str:
    m, hw = p["memory_per_device"], p["hardware"]
    rows = [
        (
            "parameters",
            f"{p['params']:,} ({human(p['params'])}); non-embedding {p['non_embedding_params']:,}"
            + (
                f"; active per token {p['active_params']:,} (non-embedding {p['active_non_embedding_params']:,}:"
                " the routed experts a token uses; FLOPs count these, memory all)"
                if p["active_params"] != p["params"]
                else ""
            ),
        ),
        ("vocab", f"{p['vocab_size']:,} ({p['vocab_source']})"),
        (
            "data mix",
            ", ".join(f"{k} {v:.3f}" for k, v in p["mix"]["weights"].items()) + f" — {p['mix']['from']}",
        ),
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
            f"{p['launch']['strategy']} x {p['launch']['world_size']}"
            + (f" ({_mesh(p['launch']['mesh'])})" if p["launch"]["world_size"] > 1 else "")
            + f", grad accum {p['launch']['grad_accum']}",
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
    rows += _fmt_cost(p.get("cost"))
    if p["predicted_loss"]:
        rows.append(("forecast", "final val loss " + _fmt_estimate(p["predicted_loss"], p["predicted_bpb"])))
    else:
        rows.append(("forecast", "none (run `pretrain ladder` on this recipe to fit its own scaling law)"))
    if p.get("mesh_proposal"):
        rows.append(("mesh", _fmt_proposed_mesh(p["mesh_proposal"], hw["gpu"])))
    width = max(len(k) for k, _ in rows)
    text = f"plan for {p['recipe']} ({p['model_type']})\n" + "\n".join(
        f"  {k:<{width}}  {v}" for k, v in rows
    )
    accelerate = (p.get("mesh_proposal") or {}).get("accelerate")
    if accelerate:
        text += "\n  accelerate config lines for it:\n" + "\n".join(
            f"    {line}" for line in accelerate.splitlines()
        )
    return text + ("\n" + _fmt_ladder(p["ladder"]) if p["ladder"] else "")


def _mesh(sizes: dict) -> str:
    return " x ".join(f"{dim} {size}" for dim, size in sizes.items() if dim != "cp")


def _fmt_proposed_mesh(proposal: dict, gpu: str) -> str:
    """The mesh proposed for `--gpus N`, and why smaller tensor-parallel sizes were passed over."""
    passed = "; ".join(f"tp {row['tp']}: {row['why']}" for row in proposal["tried"])
    row = proposal["proposed"]
    if row is None:
        return f"none of tp 1-8 fits {proposal['gpus']} x {gpu} ({passed}): checkpoint activations or lower the micro batch"
    memory = row["memory_per_device"]["total_gb"]
    text = f"{row['strategy']} on {proposal['gpus']} x {gpu}: {_mesh(row['mesh'])}, {memory} GiB per device"
    return text + (f" (passed over {passed})" if passed else "")


def _fmt_estimate(loss: dict, bpb: dict | None) -> str:
    text = f"{loss['value']:.4f} [{loss['low']:.4f}, {loss['high']:.4f}] nats/token"
    if bpb:
        text += f", {bpb['value']:.4f} [{bpb['low']:.4f}, {bpb['high']:.4f}] bits/byte"
    return text


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
        *_fmt_cost(f.get("cost")),
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
        + (f" ({p['tokens_counted']})" if "attention" in p["tokens_counted"] else "")
    ) + "".join(f"\n  {what}: {usd}" for what, usd in _fmt_cost(p.get("cost")))


def plan(
    recipe: Recipe | None,
    *,
    as_json: bool = False,
    budget_flops: float | None = None,
    budget_gpu_hours: float | None = None,
    gpu: str | None = None,
    mfu: float | None = None,
    budget_usd: float | None = None,
    gpus: int | None = None,
) -> int:
    """`pretrain plan [RECIPE]`: print the recipe's plan, or the proposal for a budget; returns the exit code.

    `budget_usd` buys GPU-hours at the recipe's price of one (`plan` section: rented or owned hardware) once
    its engineering is paid, on the recipe's GPU unless --gpu names another."""
    if budget_usd is not None:
        if recipe is None:
            raise PretrainError("plan: --budget-usd needs a RECIPE (its plan section prices a GPU-hour)")
        if budget_usd <= 0:
            raise PretrainError(f"plan: --budget-usd must be positive, got {budget_usd}")
        budget_gpu_hours, gpu = gpu_hours_for(recipe.plan, budget_usd), gpu or recipe.plan.gpu
    if budget_flops is not None or budget_gpu_hours is not None:
        if budget_gpu_hours is not None and not gpu:
            raise PretrainError("plan: --budget-gpu-hours needs --gpu (e.g. --gpu h100)")
        for flag, value in (("--budget-flops", budget_flops), ("--budget-gpu-hours", budget_gpu_hours)):
            if value is not None and value <= 0:
                raise PretrainError(f"plan: {flag} must be positive, got {value}")
        forecast = Forecast.load(recipe.layout) if recipe is not None else None
        if forecast is not None:  # the recipe's own law for this budget
            flops = flops_of_budget(budget_flops, budget_gpu_hours, gpu, mfu or recipe.plan.mfu)
            result = forecast_plan(recipe, forecast, flops, gpu, mfu)
            print(json.dumps(result, indent=2) if as_json else _fmt_ladder(result))
            return 0
        # without a fit: Chinchilla's optimum, priced on the recipe's hardware when a recipe is given
        default_gpu, default_mfu = (recipe.plan.gpu, recipe.plan.mfu) if recipe is not None else ("h100", 0.4)
        seq_len = recipe.train.seq_len if recipe is not None else None
        result = propose(budget_flops, budget_gpu_hours, gpu or default_gpu, mfu or default_mfu, seq_len)
        if recipe is not None and (cost := cost_of(recipe.plan, result["gpu_hours"])) is not None:
            result["cost"] = cost.as_dict()
        print(json.dumps(result, indent=2) if as_json else _fmt_proposal(result))
        return 0
    if recipe is None:
        raise PretrainError("plan: give a RECIPE, or --budget-flops C / --budget-gpu-hours H --gpu NAME")
    if gpus is not None and gpus < 1:
        raise PretrainError(f"plan: --gpus must be at least 1, got {gpus}")
    result = plan_recipe(recipe, gpu, mfu, gpus)
    print(json.dumps(result, indent=2) if as_json else _fmt_recipe(result))
    return 0
