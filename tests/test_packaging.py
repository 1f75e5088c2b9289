"""The built wheel is a working install: recipes by name, accelerate configs and the card template ship in it.

`test_wheel_runs_tiny_from_an_empty_folder` builds the wheel exactly as `pip wheel .` does (from a clean copy of
the checkout, so no stale `build/` leaks in), installs it non-editable into a fresh venv that borrows only the
heavy dependencies from this one, and runs `pretrain validate|run` by recipe name in an empty folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pretrain.commands.card import template_path
from pretrain.config import load_recipe
from pretrain.core import recipe_files
from pretrain.core.errors import RecipeError
from pretrain.core.recipe_files import card_templates, recipe_names, resolve_recipe
from pretrain.testing import SMOKE_SHAPE

SHIPPED = [
    "llama-1b",
    "llama-3.1-8b",
    "smollm2-135m",
    "smollm2-360m",
    "tiny",
    "tiny-anneal",
    "tiny-long",
    "tiny-moe",
]

# A few optimizer steps of the tiny recipe: small mix read from a bounded share of each source, small tokenizer,
# two short evaluations.
RUN_SHORT = [
    *SMOKE_SHAPE,
    "train.tokens=16384",
    "data.mixture.target_bytes=800000",
    "data.sources.0.budget.bytes=600000",
    "data.sources.1.budget.bytes=300000",
    "data.sources.2.budget.bytes=100000",
    "tokenizer.sample_bytes=400000",
    "eval.limit=8",
    "eval.every_fraction=0.5",
]


# ------------------------------------------------------------------------- recipes by name (checkout)
def test_shipped_recipe_names_are_the_recipes_folder(repo_root):
    assert recipe_names() == SHIPPED
    assert recipe_names() == sorted(p.parent.name for p in (repo_root / "recipes").glob("*/config.yaml"))


def test_a_name_resolves_to_the_shipped_recipe(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)
    assert resolve_recipe("tiny") == repo_root / "recipes" / "tiny" / "config.yaml"
    recipe = load_recipe("smollm2-135m")
    assert recipe.name == "smollm2-135m"
    assert recipe.out == tmp_path / "outputs" / "smollm2-135m"  # outputs land under the working directory
    assert (
        recipe.resolve_path(recipe.accelerate_config).resolve()
        == repo_root / "accelerate_configs" / "ddp.yaml"
    )


def test_an_existing_path_wins_over_a_name(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").write_text((repo_root / "recipes" / "tiny" / "config.yaml").read_text())
    assert resolve_recipe("tiny") == Path("tiny")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("name: mine\n")
    assert resolve_recipe("mine") == Path("mine") / "config.yaml"  # a folder holding config.yaml
    (tmp_path / "smollm2-135m").mkdir()  # a folder without a recipe does not hide the name
    assert resolve_recipe("smollm2-135m") == repo_root / "recipes" / "smollm2-135m" / "config.yaml"


def test_an_unknown_name_lists_the_shipped_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError) as err:
        load_recipe("tinyy")
    assert str(err.value).startswith("tinyy: ")
    assert ", ".join(SHIPPED) in str(err.value)
    with pytest.raises(RecipeError, match=r"nope\.yaml: file not found"):  # a path stays a path
        load_recipe("nope.yaml")


def test_no_recipes_without_a_package_copy_or_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe_files, "PACKAGE_DIR", tmp_path / "site-packages" / "pretrain")
    assert recipe_files.shipped_root() is None
    assert recipe_names() == []
    with pytest.raises(RecipeError, match="none found"):
        resolve_recipe("tiny")


# ------------------------------------------------------------------------------------- card template
def test_card_template_by_name_is_the_shipped_one(tiny_recipe_path):
    recipe = load_recipe(tiny_recipe_path, check_files=False)
    assert template_path(recipe) == card_templates() / "base_model.md.j2"
    assert (
        card_templates() == recipe_files.shipped_root() / "model_cards"
    )  # the top-level folder of a checkout


def test_card_template_path_relative_to_the_recipe(tmp_path, repo_root):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "mine.md.j2").write_text("# {{ recipe.name }}\n")
    recipe_file = tmp_path / "config.yaml"
    recipe_file.write_text((repo_root / "recipes" / "tiny" / "config.yaml").read_text())
    recipe = load_recipe(recipe_file, overrides=["hub.card_template=cards/mine.md.j2"], check_files=False)
    assert template_path(recipe) == tmp_path / "cards" / "mine.md.j2"
    # an edited copy of the shipped template next to the recipe wins over the shipped one, as a recipe file does
    (tmp_path / "base_model.md.j2").write_text("# mine\n")
    assert template_path(load_recipe(recipe_file, check_files=False)) == tmp_path / "base_model.md.j2"
    missing = load_recipe(recipe_file, overrides=["hub.card_template=gone.md.j2"], check_files=False)
    with pytest.raises(
        RecipeError, match=r"hub\.card_template: template 'gone\.md\.j2' not found.*base_model"
    ):
        template_path(missing)


def test_validate_refuses_a_missing_card_template(tmp_path, repo_root):
    """A missing template is an error of `pretrain validate`, not only when the card is rendered."""
    recipe_file = tmp_path / "config.yaml"
    recipe_file.write_text((repo_root / "recipes" / "tiny" / "config.yaml").read_text())
    with pytest.raises(RecipeError, match=r"hub\.card_template: template 'gone\.md\.j2' not found"):
        load_recipe(
            recipe_file,
            overrides=[
                "hub.card_template=gone.md.j2",
                f"accelerate_config={repo_root}/accelerate_configs/cpu.yaml",
            ],
        )


# ------------------------------------------------------------------------------- the wheel itself
def _clean_copy(repo: Path, dest: Path) -> Path:
    """The checkout's tracked and new (not ignored) files, as a fresh clone plus uncommitted work would have."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell source files from build outputs")
    for rel in filter(None, listed.stdout.split("\0")):
        src = repo / rel
        if src.is_file():  # deleted-but-still-tracked files are skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[var] = "1"
    env["PRETRAIN_NO_TQDM"] = "1"
    return env


def _check(cmd: list, cwd: Path, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.mark.slow  # about 1-2 minutes on 2 cores; .ci/run runs it as a step of its own
def test_wheel_runs_tiny_from_an_empty_folder(tmp_path, repo_root):
    source = _clean_copy(repo_root, tmp_path / "source")
    dist = tmp_path / "dist"
    _check(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            dist,
            ".",
        ],
        source,
    )
    (wheel,) = dist.glob("pretraining_handbook-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in (
        "pretrain/py.typed",
        "pretrain/model_cards/base_model.md.j2",
        "pretrain/accelerate_configs/cpu.yaml",
        *(f"pretrain/recipes/{name}/config.yaml" for name in SHIPPED),
    ):
        assert rel in names, f"{rel} missing from {wheel.name}"

    venv = tmp_path / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        _check([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip()
    )
    # the heavy dependencies (torch, transformers, ...) come from this venv; `pretrain` only from the wheel
    (site / "_deps_from_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _check(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        tmp_path,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    where = Path(_check([python, "-c", "import pretrain; print(pretrain.__file__)"], empty).strip())
    assert where.is_relative_to(site), f"pretrain imported from {where}, not from the installed wheel"
    pretrain = venv / "bin" / "pretrain"
    validated = _check([pretrain, "validate", "tiny", "smollm2-135m"], empty)
    assert "ok: tiny (tiny: llama" in validated and "ok: smollm2-135m (smollm2-135m: llama" in validated

    overrides = [arg for value in RUN_SHORT for arg in ("--set", value)]
    _check([pretrain, "run", "tiny", *overrides], empty, timeout=600)
    card = empty / "outputs" / "tiny" / "final" / "README.md"
    assert card.is_file(), sorted(p.name for p in (empty / "outputs" / "tiny").iterdir())
    # the installed wheel renders the card from its own copy of the template
    shipped = _check(
        [python, "-c", "from pretrain.core.recipe_files import card_templates; print(card_templates())"],
        empty,
    )
    assert Path(shipped.strip()).is_relative_to(site), shipped
    assert "# tiny — a base model pretrained from scratch" in card.read_text(encoding="utf-8")
