"""Provenance of a mix's sources: local files by content hash, Hub datasets by resolved commit, licences."""

from __future__ import annotations

from pretrain.config import load_recipe
from pretrain.data.provenance import source_provenance


def _recipe(tiny_recipe_path, tmp_path, *sources: str):
    listed = ", ".join(sources)
    return load_recipe(
        tiny_recipe_path, overrides=[f"data.sources=[{listed}]"], output_dir=str(tmp_path / "o")
    )


def test_local_files_are_named_by_their_content(tiny_recipe_path, tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a.txt").write_text("one\n")
    (folder / "b.txt").write_text("two\n")
    source = f"{{name: books, type: local, paths: [{folder}], weight: 1, license: cc0-1.0}}"
    recipe = _recipe(tiny_recipe_path, tmp_path, source)
    row = source_provenance(recipe, recipe.data.sources[0])
    assert (row["files"], row["bytes"], row["license"]) == (2, 8, "cc0-1.0")
    assert source_provenance(recipe, recipe.data.sources[0])["sha256"] == row["sha256"]  # stable
    (folder / "b.txt").write_text("tw0\n")  # same size, other content
    assert source_provenance(recipe, recipe.data.sources[0])["sha256"] != row["sha256"]


def test_a_hub_source_offline_says_its_commit_is_unresolved(tiny_recipe_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = "{name: web, type: hub, path: org/web, revision: v1, weight: 1}"
    recipe = _recipe(tiny_recipe_path, tmp_path, source)
    row = source_provenance(recipe, recipe.data.sources[0])
    assert row["origin"] == "hf://datasets/org/web" and row["revision"] == "v1" and row["commit"] is None
    assert row["unresolved"] and row["license"] == "not declared"


def test_built_in_corpora_are_the_psf_licensed_standard_library(tiny_recipe_path, tmp_path):
    recipe = load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "o"))
    rows = [source_provenance(recipe, s) for s in recipe.data.sources]
    assert {r["license"] for r in rows} == {"PSF-2.0"}
    assert all(r["origin"].startswith("builtin:python_") and r["python"] for r in rows)
