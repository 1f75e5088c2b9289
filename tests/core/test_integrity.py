"""Sealed folders: a marker listing every file's size and SHA-256 makes a missing, cut or changed file visible."""

from __future__ import annotations

import json
import os

from pretrain.core.integrity import check_sealed, manifest_of, read_manifest, seal


def _folder(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"w" * 5000)
    (folder / "sub" / "state.json").write_text('{"step": 3}')
    return folder, folder / "sub" / "DONE"


def test_an_intact_folder_has_no_problems_and_the_marker_lists_every_other_file(tmp_path):
    folder, marker = _folder(tmp_path)
    files = seal(folder, marker, {"complete": True})
    assert sorted(files) == ["sub/state.json", "weights.bin"]
    assert json.loads(marker.read_text())["complete"] is True
    assert check_sealed(folder, marker) == []
    (folder / "README.md").write_text("added after sealing: not part of what was sealed")
    assert check_sealed(folder, marker) == []


def test_missing_truncated_and_changed_files_are_each_one_line(tmp_path):
    folder, marker = _folder(tmp_path)
    seal(folder, marker)
    os.truncate(folder / "weights.bin", 100)
    assert check_sealed(folder, marker) == ["weights.bin: 100 bytes, 5000 when written (truncated)"]
    (folder / "weights.bin").write_bytes(b"x" * 5000)  # same size, other bytes
    assert check_sealed(folder, marker) == [
        "weights.bin: content differs from when it was written (SHA-256 mismatch)"
    ]
    assert check_sealed(folder, marker, hashes=False) == []  # sizes only cannot see it
    (folder / "sub" / "state.json").unlink()
    assert "sub/state.json: missing" in check_sealed(folder, marker)


def test_a_marker_without_a_manifest_says_so(tmp_path):
    folder, marker = _folder(tmp_path)
    marker.write_text("ok\n")  # a folder sealed before markers carried a manifest
    assert read_manifest(marker) is None and check_sealed(folder, marker) is None
    assert check_sealed(folder, folder / "absent") is None


def test_a_manifest_merged_from_parts_seals_the_same(tmp_path):
    """A writer split over processes hashes its own files and seals with the merged manifest."""
    folder, marker = _folder(tmp_path)
    parts = [
        manifest_of(folder, [folder / "weights.bin"]),
        manifest_of(folder, [folder / "sub" / "state.json"]),
    ]
    seal(folder, marker, files={k: v for part in parts for k, v in part.items()})
    assert read_manifest(marker) == manifest_of(folder, exclude=[marker])
