"""What a run will ask of the Hub, asked first: the token's right to write to the repo, and each Hub dataset's
listing, resolved commit and declared licence — against the loopback Hub (tests/hub/hub_server.py)."""

from __future__ import annotations

import pytest

from pretrain.hub.access import HubUnreachable, dataset_facts, push_access_verdict

TOKEN = "hf_FAKEtokenXYZ0123456789abcdefghijkl"


@pytest.fixture()
def online(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


def test_a_listed_dataset_gives_its_commit_files_and_licence(online):
    files = {"README.md": b"---\nlicense: odc-by\n---\n", "data/train-0.parquet": b"x"}
    sha = online.state.add_dataset("org/corpus", files, card_data={"license": "odc-by"})
    facts = dataset_facts("org/corpus")
    assert facts.sha == sha and "data/train-0.parquet" in facts.files and facts.license == "odc-by"
    with pytest.raises(LookupError):
        dataset_facts("org/missing")


def test_offline_mode_asks_nothing(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE"):
        dataset_facts("org/corpus")
    verdict = push_access_verdict("user/model")
    assert not verdict.ok and "HF_HUB_OFFLINE" in verdict.detail


def test_push_access_needs_a_write_token_of_the_namespace(online, monkeypatch, tmp_path):
    assert push_access_verdict("user/model").ok
    other = push_access_verdict("someone-else/model")
    assert not other.ok and "'someone-else'" in other.detail
    online.state.token_role = "read"
    monkeypatch.setattr("pretrain.hub.push._ACCEPTED_TOKENS", set())
    read_only = push_access_verdict("user/model")
    assert not read_only.ok and "read-only" in read_only.detail
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    assert "no Hugging Face token" in push_access_verdict("user/model").detail
