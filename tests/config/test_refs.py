"""`<Hub id | local folder>[@revision]`: how a recipe's `tokenizer.pretrained` / `model.init_from` is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain.config.refs import PretrainedRef, RefError, parse_pretrained_ref
from pretrain.core.errors import PretrainError


def _parse(spec: str, base: Path) -> PretrainedRef:
    return parse_pretrained_ref(spec, lambda value: base / value, "model.init_from")


def test_an_owner_and_name_is_a_hub_id_on_its_default_branch(tmp_path):
    ref = _parse("HuggingFaceTB/SmolLM2-135M", tmp_path)
    assert (ref.repo_id, ref.revision, ref.folder) == ("HuggingFaceTB/SmolLM2-135M", None, None)
    assert ref.spec == "HuggingFaceTB/SmolLM2-135M"


def test_a_revision_follows_the_at_sign(tmp_path):
    ref = _parse("HuggingFaceTB/SmolLM2-135M@v1.0", tmp_path)
    assert (ref.repo_id, ref.revision) == ("HuggingFaceTB/SmolLM2-135M", "v1.0")


def test_a_bare_name_without_owner_is_a_hub_id(tmp_path):
    ref = _parse("gpt2", tmp_path)
    assert (ref.repo_id, ref.revision, ref.folder) == ("gpt2", None, None)


def test_an_existing_folder_is_a_local_ref(tmp_path):
    (tmp_path / "parent").mkdir()
    ref = _parse("parent", tmp_path)
    assert (ref.repo_id, ref.revision, ref.folder) == (None, None, tmp_path / "parent")


def test_a_local_folder_wins_over_a_hub_id_of_the_same_spelling(tmp_path):
    (tmp_path / "HuggingFaceTB" / "SmolLM2-135M").mkdir(parents=True)
    ref = _parse("HuggingFaceTB/SmolLM2-135M", tmp_path)
    assert ref.repo_id is None and ref.folder == tmp_path / "HuggingFaceTB" / "SmolLM2-135M"


def test_a_file_of_that_name_is_not_a_folder_so_the_spelling_is_a_hub_id(tmp_path):
    (tmp_path / "gpt2").write_text("not a model folder")
    ref = _parse("gpt2", tmp_path)
    assert ref.repo_id == "gpt2" and ref.folder is None


def test_a_hub_id_with_an_empty_revision_is_an_error(tmp_path):
    with pytest.raises(
        RefError, match=r"model\.init_from: 'owner/name@' is neither an existing folder nor a Hub id"
    ):
        _parse("owner/name@", tmp_path)


@pytest.mark.parametrize("spec", ["not a repo", "a/b/c", "-owner/name", "owner/", "owner/na me@main"])
def test_a_spelling_that_is_neither_folder_nor_hub_id_is_an_error(tmp_path, spec):
    with pytest.raises(RefError) as info:
        _parse(spec, tmp_path)
    assert "`owner/name[@revision]`" in str(info.value)


def test_a_ref_error_is_a_user_error_printed_without_traceback():
    assert issubclass(RefError, PretrainError)


def test_where_names_the_repo_and_only_a_revision_that_was_asked_for(tmp_path):
    assert _parse("owner/name", tmp_path).where == "owner/name"
    assert _parse("owner/name@dev", tmp_path).where == "owner/name@dev"


def test_describe_names_the_commit_a_hub_ref_resolved_to(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    ref = _parse("owner/name", tmp_path)
    assert ref.describe(tmp_path / "snapshots" / commit) == {
        "model": "owner/name",
        "revision": "main",
        "commit": commit,
    }


def test_describe_keeps_the_revision_asked_for_and_no_commit_for_a_folder_not_named_by_one(tmp_path):
    ref = _parse("owner/name@dev", tmp_path)
    assert ref.describe(tmp_path / "some-folder") == {
        "model": "owner/name",
        "revision": "dev",
        "commit": None,
    }
    # 40 characters but not lower-case hex: not a commit
    assert ref.describe(tmp_path / ("G" * 40))["commit"] is None


def test_describe_of_a_local_ref_names_the_folder(tmp_path):
    (tmp_path / "parent").mkdir()
    ref = _parse("parent", tmp_path)
    assert ref.describe(tmp_path / "ignored") == {
        "model": str(tmp_path / "parent"),
        "revision": None,
        "commit": None,
    }
