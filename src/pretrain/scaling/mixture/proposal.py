"""`mixture/proposal.json` and `mixture/report.md` (+ plots): the one home of their formats.

proposal.json:
    {"kind": "pretrain.mixture_proposal", "version": 1,
     "weights": {source: share},                      # the proposed mix (sums to 1)
     "predicted": {"target": x, "components": {component: x}},   # the model's prediction for it
     "baseline": {"weights": {source: share}, "predicted": x, "measured": x | null},   # the recipe's own mix
     "cv_spearman": x | null,                         # leave-one-out rank correlation over the proxies
     "cv": {...},                                     # per kind and per component (regression.fit_mixture_model)
     "target": {component: weight}, "bounds": {source: [low, high]},
     "proxies": [{"name", "weights", "components", "target"}], "proxy": {...the proxies' size...}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pretrain.core.atomic import write_json_atomic, write_text_atomic
from pretrain.core.errors import MixtureError
from pretrain.scaling.mixture.bounds import MixBounds
from pretrain.scaling.mixture.regression import MixtureModel

KIND, VERSION = "pretrain.mixture_proposal", 1
PROPOSAL, REPORT = "proposal.json", "report.md"
PLOT_FIT, PLOT_SHARES = "predicted_vs_measured.png", "target_by_share.png"


@dataclass
class ProxyResult:
    name: str
    weights: dict[str, float]
    components: dict[str, float]
    target: float


@dataclass
class Proposal:
    weights: dict[str, float]
    predicted: dict
    baseline: dict
    cv_spearman: float | None
    cv: dict
    target: dict[str, float]
    bounds: dict[str, list[float]]
    proxies: list[ProxyResult]
    proxy: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": KIND, "version": VERSION, **asdict(self)}

    @classmethod
    def read(cls, folder: Path) -> Proposal:
        path = Path(folder) / PROPOSAL
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise MixtureError(
                f"{path}: cannot read the mixture proposal ({exc}); re-run `pretrain mixture`"
            ) from None
        if data.get("kind") != KIND:
            raise MixtureError(f"{path}: not a mixture proposal (kind {data.get('kind')!r})")
        data.pop("kind"), data.pop("version", None)
        data["proxies"] = [ProxyResult(**p) for p in data["proxies"]]
        return cls(**data)


def build_proposal(
    model: MixtureModel,
    bounds: MixBounds,
    components: list[str],
    target_weights: dict[str, float],
    proxies: list[ProxyResult],
    proposed: np.ndarray,
    proxy: dict,
) -> Proposal:
    """The proposal of a fitted search: `proposed` (shares in `bounds.sources` order) and the baseline (the prior,
    measured by the proxy that trained on it when there is one)."""
    prior = bounds.as_dict(bounds.prior)
    measured = next((p.target for p in proxies if np.allclose(bounds.vector(p.weights), bounds.prior)), None)
    return Proposal(
        weights=bounds.as_dict(proposed),
        predicted={
            "target": round(float(model.predict(proposed[None])[0]), 6),
            "components": {
                name: round(float(v), 6)
                for name, v in zip(components, model.predict_components(proposed[None])[0], strict=True)
            },
        },
        baseline={
            "weights": prior,
            "predicted": round(float(model.predict(bounds.prior[None])[0]), 6),
            "measured": measured,
        },
        cv_spearman=model.cv.get("spearman"),
        cv={k: v for k, v in model.cv.items() if k != "loo_target"},
        target=target_weights,
        bounds={
            s: [round(float(lo), 6), round(float(hi), 6)]
            for s, lo, hi in zip(bounds.sources, bounds.low, bounds.high, strict=True)
        },
        proxies=proxies,
        proxy=proxy,
    )


def write_proposal(folder: Path, proposal: Proposal) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / PROPOSAL, proposal.to_json())
    return folder / PROPOSAL


def _plots(folder: Path, proposal: Proposal, model: MixtureModel, bounds: MixBounds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [p.target for p in proposal.proxies]
    loo = model.cv.get("loo_target") or []
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(measured, loo)
    lo, hi = min(measured + loo), max(measured + loo)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("measured target (bits/byte)")
    ax.set_ylabel("predicted, leave-one-out")
    ax.set_title(
        f"proxies (Spearman {proposal.cv_spearman if proposal.cv_spearman is None else round(proposal.cv_spearman, 3)})"
    )
    fig.tight_layout()
    fig.savefig(folder / PLOT_FIT, dpi=100)
    plt.close(fig)

    proposed = bounds.vector(proposal.weights)
    fig, ax = plt.subplots(figsize=(6, 4))
    for j, source in enumerate(bounds.sources):
        shares = np.linspace(bounds.low[j], bounds.high[j], 25)
        rest = np.delete(proposed, j)
        rows = np.array([np.insert(rest / rest.sum() * (1 - s), j, s) for s in shares])
        ax.plot(shares, model.predict(rows), label=source)
    ax.set_xlabel("share of one source (the others in the proposal's proportions)")
    ax.set_ylabel("predicted target (bits/byte)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / PLOT_SHARES, dpi=100)
    plt.close(fig)


def report_markdown(proposal: Proposal) -> str:
    sources = list(proposal.weights)
    components = list(proposal.target)
    lines = [
        "# Mixture search",
        "",
        f"Target: {' + '.join(f'{w:.3f}·{c}' for c, w in proposal.target.items())} (bits/byte, lower is better).",
        f"Proxies: {len(proposal.proxies)}; {', '.join(f'{k} {v}' for k, v in proposal.proxy.items())}.",
        f"Cross-validated (leave-one-out) Spearman of the target: {proposal.cv_spearman}; per model kind: "
        f"{proposal.cv.get('per_kind')}.",
        "",
        "| source | recipe | proposed | bounds |",
        "|---|---:|---:|---|",
    ]
    for s in sources:
        low, high = proposal.bounds[s]
        lines.append(
            f"| {s} | {proposal.baseline['weights'][s]:.4f} | {proposal.weights[s]:.4f} | [{low:.4f}, {high:.4f}] |"
        )
    lines += [
        "",
        f"Predicted target: proposed {proposal.predicted['target']:.4f}, recipe {proposal.baseline['predicted']:.4f}"
        f" (measured on its proxy: {proposal.baseline['measured']}).",
        "",
        "| component | model | LOO Spearman | LOO MAE |",
        "|---|---|---:|---:|",
    ]
    for name, c in proposal.cv.get("components", {}).items():
        lines.append(f"| {name} | {c['kind']} | {c['spearman']} | {c['mae']:.4f} |")
    lines += ["", "| proxy | " + " | ".join(sources) + " | " + " | ".join(components) + " | target |"]
    lines.append("|---" * (len(sources) + len(components) + 2) + "|")
    for p in proposal.proxies:
        cells = [f"{p.weights.get(s, 0):.3f}" for s in sources] + [
            f"{p.components.get(c, float('nan')):.4f}" for c in components
        ]
        lines.append(f"| {p.name} | " + " | ".join(cells) + f" | {p.target:.4f} |")
    lines += ["", f"![predicted vs measured]({PLOT_FIT})", "", f"![target by share]({PLOT_SHARES})", ""]
    return "\n".join(lines)


def write_report(folder: Path, proposal: Proposal, model: MixtureModel, bounds: MixBounds) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _plots(folder, proposal, model, bounds)
    write_text_atomic(folder / REPORT, report_markdown(proposal))
    return folder / REPORT
