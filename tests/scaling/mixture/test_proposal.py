"""proposal.json round trip and report.md with its two plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pretrain.scaling.mixture.bounds import mix_bounds
from pretrain.scaling.mixture.proposal import (
    PLOT_FIT,
    PLOT_SHARES,
    Proposal,
    ProxyResult,
    build_proposal,
    write_proposal,
    write_report,
)
from pretrain.scaling.mixture.regression import LAW, fit_mixture_model


@pytest.mark.slow  # LightGBM leave-one-out fits / matplotlib: seconds on 2 busy cores
def test_proposal_round_trip_and_report(tmp_path):
    bounds = mix_bounds({"a": 1, "b": 1}, {"a": 10**9, "b": 10**9}, 10**6, 4.0, 2.0, 0.0)
    X = np.array([[0.5, 0.5], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.65, 0.35]])
    Y = np.column_stack([1 + np.exp(-2 * X[:, 0]), 2 + np.exp(-1 * X[:, 1])])
    model = fit_mixture_model(X, Y, np.array([0.5, 0.5]), ["val/a", "rc/t"], kinds=(LAW,))
    proxies = [
        ProxyResult(f"p{i}", bounds.as_dict(x), {"val/a": y[0], "rc/t": y[1]}, float(y.mean()))
        for i, (x, y) in enumerate(zip(X, Y))
    ]
    proposal = build_proposal(
        model,
        bounds,
        ["val/a", "rc/t"],
        {"val/a": 0.5, "rc/t": 0.5},
        proxies,
        np.array([0.6, 0.4]),
        {"params": 1000},
    )
    assert proposal.baseline["measured"] == proxies[0].target  # the proxy trained on the prior
    write_proposal(tmp_path, proposal)
    data = json.loads((tmp_path / "proposal.json").read_text())
    assert {"weights", "predicted", "baseline", "cv_spearman"} <= set(data) and data["weights"] == {
        "a": 0.6,
        "b": 0.4,
    }
    assert Proposal.read(tmp_path) == proposal
    report = write_report(tmp_path, proposal, model, bounds).read_text()
    assert "| a | 0.5000 | 0.6000 |" in report and "| p4 |" in report
    assert (tmp_path / PLOT_FIT).stat().st_size > 0 and (tmp_path / PLOT_SHARES).stat().st_size > 0
