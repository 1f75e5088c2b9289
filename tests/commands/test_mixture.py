"""`pretrain mixture`: a 2-source swarm end to end on built-in data, resumed without retraining; bad input."""

from __future__ import annotations

import json

import pytest

from pretrain.commands.mixture import check_mixture, run_mixture, search_bounds
from pretrain.config import load_recipe
from pretrain.core.errors import MixtureError
from pretrain.train.metrics import read_records

SWARM = [
    "train.data_stages=[{name: main, share: 1.0, weights: {stdlib_code: 2, stdlib_docs: 1}}]",
    "eval.enabled=false",
    "mixture.proxies=4",
    "mixture.target_sources={stdlib_code: 1, stdlib_docs: 1}",
    "mixture.proxy_model={hidden_size: 32, intermediate_size: 64}",
    "mixture.proxy_tokens=4096",
    "mixture.stem_fraction=0.5",
    "mixture.val_batches=1",
    "mixture.band=1.5",
]


# In the default suite, as the issue asks: 10 s on 2 cores at load ~2 (it took 89 s at load 13), the stem and 4
# proxy branches of 4 steps each, then a second search that trains nothing
def test_a_two_source_swarm_proposes_a_mix_and_resumes_without_retraining(fresh_run):
    recipe, out = fresh_run("swarm", *SWARM)
    proposal = run_mixture(recipe)
    folder = out / "mixture"
    data = json.loads((folder / "proposal.json").read_text())
    assert (
        set(data["weights"]) == {"stdlib_code", "stdlib_docs"}
        and abs(sum(data["weights"].values()) - 1) < 1e-6
    )
    for name, share in data["weights"].items():
        low, high = data["bounds"][name]
        assert low - 1e-6 <= share <= high + 1e-6
    assert len(data["proxies"]) == 4 and data["proxies"][0]["name"] == "p00-prior"
    assert data["baseline"]["measured"] == data["proxies"][0]["target"]
    assert 0 < data["proxy"]["flops_fraction"] and "lr_rule" in data["proxy"]
    # every proxy, the recipe-mix one too, branched from the stem's checkpoint at step 4 of 8: steps 5-8 only
    assert (folder / "proxies" / "stem" / "final").is_dir()
    for p in data["proxies"]:
        steps = [
            r["step"] for r in read_records(folder / "proxies" / p["name"] / "metrics.jsonl") if "loss" in r
        ]
        assert min(steps) == 5 and max(steps) == 8, (p["name"], steps)
    # a second search trains nothing: every proxy is current
    finals = {
        p: (folder / "proxies" / p / "final" / "STAGE.json").stat().st_mtime
        for p in [x["name"] for x in data["proxies"]]
    }
    again = run_mixture(recipe)
    assert again.weights == proposal.weights
    assert finals == {p: (folder / "proxies" / p / "final" / "STAGE.json").stat().st_mtime for p in finals}
    # the proposed recipe loads as is and says where its weights came from
    proposed = load_recipe(folder / "recipe.yaml")
    stage = proposed.train.data_stages[-1]
    assert stage.weight_shares() == pytest.approx(data["weights"], abs=1e-6)
    assert (
        stage.weights_from.startswith("pretrain mixture: ")
        and str(folder / "proposal.json") in stage.weights_from
    )
    assert (folder / "report.md").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ("mixture.target_sources={web: 1}", "mixture.target_sources names web, not a source"),
        ("mixture.target_tasks={arc_easy: 1}", "mixture.target_tasks names arc_easy, not a task"),
        ("mixture.proxies=3", "mixture.proxies=3 is fewer than the 2 sources of the mix \\+ 2"),
        ("mixture.max_repetition=0.0001", "source 'stdlib_code' has .* train tokens"),
    ],
)
def test_bad_input_is_one_error_before_any_proxy_trains(make_run, tmp_path, change, message):
    recipe = make_run(tmp_path / "bad", *SWARM, change)
    with pytest.raises(MixtureError, match=message):
        check_mixture(recipe)
        search_bounds(recipe, 10**7)
    assert not (tmp_path / "bad" / "mixture" / "proxies").exists()
