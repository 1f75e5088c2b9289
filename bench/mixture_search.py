"""Choose a data mix by measurement, then prove it: `pretrain mixture` on the CPU recipe, and full-size runs of the
recipe's hand-set mix, the uniform mix and the proposed mix, 2 training seeds each (`train.seed`: the same
packed data and val split, another init and data order).

    python bench/mixture_search.py                      # bench/recipes/mixture-cpu (needs ../shared/data)
    python bench/mixture_search.py --quick              # the built-in tiny recipe, tiny sizes (smoke test)

Everything runs in this one process (a `pretrain train` process spends ~20 s starting): the data stages once,
the proxies one after another (commands/mixture.py), then the 6 full runs. Every run is an ordinary run folder
under --out: re-running the bench skips whatever is finished, so a stopped bench resumes.

Last stdout line, one JSON object:
    {"bench": "mixture_search", "proxies", "proxy_flops_fraction", "cv_spearman", "target_default",
     "target_uniform", "target_proposed", "target_predicted", "seeds", ...}
`target_*` are means over the seeds of the full runs' target (the recipe's weighted mean of benchmark / per-source
bits per byte; lower is better); `spread_*` the max - min over the seeds. `target_predicted` is the proxies'
prediction for the proposed mix carried to the full size by the hand-set mix's ratio (measured full hand-set x
predicted(proposed) / predicted(hand-set)); `target_predicted_proxy_scale` is the raw prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pretrain.commands.derive import derive_recipe, train_derived  # noqa: E402
from pretrain.commands.mixture import run_mixture  # noqa: E402
from pretrain.commands.stages import is_current  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.core.progress import get_logger  # noqa: E402
from pretrain.scaling.mixture.target import Target, measured_components  # noqa: E402
from pretrain.scaling.plan import mix_origin  # noqa: E402
from pretrain.train.metrics import last_validation, read_records  # noqa: E402

log = get_logger("pretrain.bench")
RECIPE = REPO / "bench" / "recipes" / "mixture-cpu" / "config.yaml"
SHARED = REPO.parent / "shared" / "data"
QUICK = [  # the tiny recipe's 3 built-in sources, tiny sizes: the whole bench in a few minutes on a CPU
    "tokenizer.vocab_size=512",
    "tokenizer.sample_bytes=400000",
    "data.mixture.target_bytes=800000",
    "data.val_fraction=0.05",
    "model.hidden_size=64",
    "model.intermediate_size=128",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=2",
    "model.num_key_value_heads=2",
    "model.max_position_embeddings=64",
    "train.seq_len=64",
    "train.micro_batch_size=4",
    "train.global_batch_tokens=512",
    "train.tokens=20480",
    "train.validation.per_source_batches=2",
    "train.data_stages=[{name: main, share: 1.0, weights: {stdlib_code: 0.6, stdlib_docs: 0.3, pydoc_topics: 0.1}}]",
    "eval.enabled=false",
    "mixture.proxies=5",
    "mixture.target_sources={stdlib_code: 1, stdlib_docs: 1, pydoc_topics: 1}",
    "mixture.proxy_model={hidden_size: 32, intermediate_size: 64}",
    "mixture.proxy_tokens=2048",
    "mixture.proxy_global_batch_tokens=256",
    "mixture.val_batches=1",
]


def full_run(recipe, name: str, weights: dict[str, float], seed: int, out: Path):
    """The recipe at its full size on `weights`, training seed `seed` (same packed data), in `out/full/`."""

    def edit(raw: dict) -> None:
        raw["train"]["seed"] = seed
        stages = raw["train"].get("data_stages") or [{"name": "main", "share": 1.0}]
        stages[-1].update(weights=dict(weights), weights_from=f"bench/mixture_search.py: {name}")
        raw["train"]["data_stages"] = stages

    return derive_recipe(recipe, out / "full" / f"{name}-s{seed}", edit)


def score(run, target: Target) -> dict:
    records = read_records(run.layout.metrics)
    evaluation = next((r for r in reversed(records) if any(k.startswith("eval/") for k in r)), {})
    components = measured_components(last_validation(records), evaluation)
    return {"target": round(target.value(components), 5), "components": components}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench-mixture")
    parser.add_argument("--seeds", default="8,9", help="training seeds of the full runs (train.seed)")
    parser.add_argument("--quick", action="store_true", help="the tiny built-in recipe at tiny sizes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    os.environ.setdefault("PRETRAIN_NO_TQDM", "1")
    recipe_file, overrides = args.recipe, list(args.overrides)
    if args.quick:
        recipe_file, overrides = REPO / "recipes" / "tiny" / "config.yaml", [*QUICK, *overrides]
    elif not SHARED.is_dir():
        print(
            f"mixture_search: {SHARED} not found: the CPU recipe reads its corpora and benchmarks there",
            file=sys.stderr,
        )
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    cpu0, wall0 = time.process_time(), time.monotonic()
    recipe = load_recipe(recipe_file, overrides=overrides, output_dir=str(args.out))
    proposal = run_mixture(recipe)
    proxy_seconds = time.process_time() - cpu0
    log.info("bench: proposal %s (%.0f CPU-s so far)", proposal.weights, proxy_seconds)
    target = Target(proposal.target)
    hand = mix_origin(recipe)["weights"]
    mixes = {
        "default": hand,
        "uniform": {name: 1 / len(hand) for name in hand},
        "proposed": proposal.weights,
    }
    measured: dict[str, list[dict]] = {}
    for name, weights in mixes.items():
        for seed in seeds:
            run = full_run(recipe, name, weights, seed, args.out)
            if not is_current(run, "train"):
                log.info("bench: full run %s seed %d: %s", name, seed, weights)
                train_derived(recipe, run, "auto")
            measured.setdefault(name, []).append(score(run, target))
            log.info("bench: full run %s seed %d target %.4f", name, seed, measured[name][-1]["target"])
    mean = {n: sum(r["target"] for r in rs) / len(rs) for n, rs in measured.items()}
    spread = {n: max(r["target"] for r in rs) - min(r["target"] for r in rs) for n, rs in measured.items()}
    predicted_proxy = proposal.predicted["target"]
    predicted = mean["default"] * predicted_proxy / proposal.baseline["predicted"]
    margin = {
        other: mean[other] - mean["proposed"] - max(spread[other], spread["proposed"])
        for other in ("default", "uniform")
    }
    result = {
        "bench": "mixture_search",
        "proxies": len(proposal.proxies),
        "proxy_flops_fraction": proposal.proxy["flops_fraction"],
        "cv_spearman": proposal.cv_spearman,
        "target_default": round(mean["default"], 5),
        "target_uniform": round(mean["uniform"], 5),
        "target_proposed": round(mean["proposed"], 5),
        "target_predicted": round(predicted, 5),
        "seeds": seeds,
        "spread_default": round(spread["default"], 5),
        "spread_uniform": round(spread["uniform"], 5),
        "spread_proposed": round(spread["proposed"], 5),
        "beats_default_by_more_than_spread": margin["default"] > 0,
        "beats_uniform_by_more_than_spread": margin["uniform"] > 0,
        "prediction_error_pct": round(100 * (predicted - mean["proposed"]) / mean["proposed"], 3),
        "target_predicted_proxy_scale": predicted_proxy,
        "weights_default": hand,
        "weights_proposed": proposal.weights,
        "proxy": proposal.proxy,
        "full_runs": {n: [r["target"] for r in rs] for n, rs in measured.items()},
        "components": {n: rs[0]["components"] for n, rs in measured.items()},
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "proxy_cpu_seconds": round(proxy_seconds, 1),
        "wall_seconds": round(time.monotonic() - wall0, 1),
        "quick": args.quick,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
