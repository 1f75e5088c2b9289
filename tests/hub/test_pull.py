"""Where a parent model or tokenizer comes from: a local folder as it is, a Hub repo from the local cache when
downloads are off, and a one-line `PullError` saying what to do when it is not there. No network here."""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from pretrain.config.refs import parse_pretrained_ref
from pretrain.core.errors import PretrainError
from pretrain.hub.pull import MODEL_FILES, TOKENIZER_FILES, PullError, fetch

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    """An empty Hub cache, downloads off (HF_HUB_OFFLINE=1)."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def ref(spec: str, base):
    return parse_pretrained_ref(spec, lambda value: base / value, "model.init_from")


def cache_snapshot(cache, repo_id: str, branch: str = "main"):
    """`repo_id` at COMMIT in the Hub cache, as an earlier download left it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / branch).write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    return snapshot


def test_a_local_folder_is_used_where_it_is(tmp_path, offline_cache):
    (tmp_path / "parent").mkdir()
    assert fetch(ref("parent", tmp_path), MODEL_FILES, "model.init_from") == tmp_path / "parent"
    assert list(offline_cache.iterdir()) == []  # nothing downloaded or cached


def test_a_cached_hub_repo_is_its_snapshot_folder_named_by_its_commit(tmp_path, offline_cache):
    snapshot = cache_snapshot(offline_cache, "someone/parent")
    parent = ref("someone/parent", tmp_path)
    folder = fetch(parent, MODEL_FILES, "model.init_from")
    assert folder == snapshot
    assert parent.describe(folder) == {"model": "someone/parent", "revision": "main", "commit": COMMIT}


def test_a_cached_branch_is_found_by_its_name(tmp_path, offline_cache):
    snapshot = cache_snapshot(offline_cache, "someone/parent", branch="dev")
    assert fetch(ref("someone/parent@dev", tmp_path), MODEL_FILES, "model.init_from") == snapshot


def test_an_uncached_repo_while_offline_is_a_pull_error_saying_downloads_are_off(tmp_path, offline_cache):
    with pytest.raises(PullError) as info:
        fetch(ref("someone/missing@dev", tmp_path), TOKENIZER_FILES, "tokenizer.pretrained")
    assert str(info.value) == (
        "tokenizer.pretrained: someone/missing@dev: not in the local Hub cache and downloads are off "
        "(HF_HUB_OFFLINE=1); check your network, proxy and HF_ENDPOINT, or give a local folder"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one line, no library traceback


def test_a_pull_error_is_a_user_error():
    assert issubclass(PullError, PretrainError)


def test_a_parent_model_is_read_from_its_config_and_safetensors_never_pickles():
    assert {"config.json", "*.safetensors", "model.safetensors.index.json"} <= set(MODEL_FILES)
    assert not any(p.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for p in MODEL_FILES)


def test_a_tokenizer_is_its_fast_file_its_settings_or_a_gpt2_vocab_and_merges():
    assert {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"} <= set(TOKENIZER_FILES)
    assert not any(p.endswith(".safetensors") for p in TOKENIZER_FILES)
