"""What of a folder a push uploads: safetensors, JSON configs, tokenizer files, the card and plots, minus what
the folder's owner keeps back (`UploadFilter`); the staging copy (`--dry-run`) holds exactly that."""

from __future__ import annotations

from pathlib import Path

import pytest

from pretrain.core.errors import PretrainError
from pretrain.hub.push import ALLOWED_SUFFIXES, HubPushError, UploadFilter, files_to_upload, stage_upload

MODEL = [
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "learning_curves.png",
]
LOCAL_ONLY = ["optimizer.pt", "rng.pkl", "training_args.bin", ".complete", ".hidden.json", "notes.yaml"]


def make_folder(root: Path, *names: str) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}")
    return root


def rel(*names: str) -> list[Path]:
    return sorted(Path(n) for n in names)


def test_model_files_are_uploaded_and_everything_else_stays_local(tmp_path):
    folder = make_folder(tmp_path / "ckpt", *MODEL, *LOCAL_ONLY)
    assert files_to_upload(folder, UploadFilter()) == rel(*MODEL)


def test_every_allowed_suffix_is_a_model_file_suffix():
    assert set(ALLOWED_SUFFIXES) == {Path(name).suffix for name in MODEL}


def test_files_in_subfolders_are_uploaded_by_their_relative_path(tmp_path):
    folder = make_folder(tmp_path / "ckpt", "model.safetensors", "evals/summary.json", "evals/deep/curve.png")
    assert files_to_upload(folder, UploadFilter()) == rel(
        "evals/deep/curve.png", "evals/summary.json", "model.safetensors"
    )


def test_hidden_files_are_never_uploaded_even_with_an_allowed_suffix(tmp_path):
    folder = make_folder(tmp_path / "ckpt", "model.safetensors", ".marker.json", "sub/.cache.json")
    assert files_to_upload(folder, UploadFilter()) == rel("model.safetensors")


def test_skipped_names_are_left_out_wherever_they_are(tmp_path):
    folder = make_folder(
        tmp_path / "ckpt", "model.safetensors", "eval_results.json", "evals/eval_results.json"
    )
    skip = UploadFilter(skip_names=frozenset({"eval_results.json"}))
    assert files_to_upload(folder, skip) == rel("model.safetensors")


def test_skipped_folders_are_left_out_whole_at_the_top_level_only(tmp_path):
    folder = make_folder(
        tmp_path / "ckpt", "model.safetensors", "trainer_state/state.json", "evals/trainer_state/state.json"
    )
    skip = UploadFilter(skip_dirs=frozenset({"trainer_state"}))
    assert files_to_upload(folder, skip) == rel("evals/trainer_state/state.json", "model.safetensors")


def test_a_skipped_folder_name_does_not_skip_a_file_of_that_name(tmp_path):
    folder = make_folder(tmp_path / "ckpt", "model.safetensors", "trainer_state.json")
    assert files_to_upload(folder, UploadFilter(skip_dirs=frozenset({"trainer_state.json"}))) == rel(
        "model.safetensors", "trainer_state.json"
    )


def test_whole_folders_are_uploaded_with_every_file_whatever_its_suffix(tmp_path):
    folder = make_folder(
        tmp_path / "ckpt",
        "model.safetensors",
        "optimizer.pt",
        "trainer_state/optimizer.pt",
        "trainer_state/rank-00000/rng.pkl",
        "trainer_state/state.json",
    )
    whole = UploadFilter(whole_dirs=frozenset({"trainer_state"}))
    assert files_to_upload(folder, whole) == rel(
        "model.safetensors",
        "trainer_state/optimizer.pt",
        "trainer_state/rank-00000/rng.pkl",
        "trainer_state/state.json",
    )


def test_the_default_filter_keeps_nothing_else_back():
    skip = UploadFilter()
    assert skip.skip_names == skip.skip_dirs == skip.whole_dirs == frozenset()


def test_staging_copies_exactly_what_would_be_uploaded(tmp_path):
    folder = make_folder(tmp_path / "ckpt", *MODEL, *LOCAL_ONLY, "evals/summary.json", "trainer_state/s.json")
    skip = UploadFilter(skip_dirs=frozenset({"trainer_state"}))
    dest = tmp_path / "staged"
    dest.mkdir()
    staged = stage_upload(folder, dest, skip)
    assert staged == files_to_upload(folder, skip)
    on_disk = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert on_disk == staged
    for path in staged:
        assert (dest / path).read_text() == (folder / path).read_text()


def test_a_folder_without_safetensors_is_not_a_model_folder(tmp_path):
    folder = make_folder(tmp_path / "ckpt", "config.json", "README.md", "model.bin")
    dest = tmp_path / "staged"
    dest.mkdir()
    with pytest.raises(PretrainError, match=r"ckpt: no model.safetensors — not a model folder"):
        stage_upload(folder, dest, UploadFilter())
    assert list(dest.iterdir()) == []


def test_weights_that_are_kept_back_do_not_make_a_model_folder(tmp_path):
    folder = make_folder(tmp_path / "ckpt", "config.json", "trainer_state/model.safetensors")
    with pytest.raises(PretrainError, match="not a model folder"):
        stage_upload(folder, tmp_path, UploadFilter(skip_dirs=frozenset({"trainer_state"})))


def test_a_push_error_is_one_line_and_its_reason_defaults_to_the_message():
    exc = HubPushError("push failed:\n   the Hub   said no\n")
    assert str(exc) == "push failed: the Hub said no"
    assert exc.reason == "push failed: the Hub said no" and exc.retryable is False


def test_a_push_error_keeps_a_separate_reason_and_whether_to_retry():
    exc = HubPushError("push failed: timeout — re-run", retryable=True, reason="cannot reach\nthe Hub")
    assert exc.reason == "cannot reach the Hub" and exc.retryable is True
    assert isinstance(exc, PretrainError)
