"""Before curation: every Hub dataset of the recipe is listed (one request each, whatever the number of sources
reading it); one that cannot be is a ✗ naming the sources and the fix. Against the loopback Hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pretrain.config import validate_recipe
from pretrain.data.source_checks import sources_verdict
from pretrain.testing import MINIMAL_MODEL, MINIMAL_TRAIN

_spec = importlib.util.spec_from_file_location(
    "hub_server", Path(__file__).parents[1] / "hub" / "hub_server.py"
)
hub_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hub_server)


def _recipe(*sources: dict):
    return validate_recipe(
        {"name": "r", "data": {"sources": list(sources)}, "model": MINIMAL_MODEL, "train": MINIMAL_TRAIN}
    )


def _hub(name: str, path: str) -> dict:
    return {"name": name, "type": "hub", "path": path, "weight": 1.0}


@pytest.fixture()
def hub(monkeypatch):
    from huggingface_hub import constants

    with hub_server.HubServer() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


def test_listed_datasets_pass_and_a_missing_one_is_named_once(hub):
    hub.state.add_dataset("org/corpus", {"data/train.parquet": b"x"})
    ok = sources_verdict(_recipe(_hub("a", "org/corpus"), _hub("b", "org/corpus")))
    assert ok.ok and "1 Hub dataset(s) listed" in ok.detail
    bad = sources_verdict(_recipe(_hub("a", "org/corpus"), _hub("b", "org/gone"), _hub("c", "org/gone")))
    assert not bad.ok and bad.detail.count("org/gone") == 1 and "sources 'b', 'c'" in bad.detail
    assert "gated" in bad.detail


def test_builtin_sources_need_no_network():
    verdict = sources_verdict(
        _recipe({"name": "code", "type": "builtin", "corpus": "python_stdlib_code", "weight": 1})
    )
    assert verdict.ok and "no Hub dataset" in verdict.detail
