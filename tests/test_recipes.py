"""Every recipe under recipes/ validates through the CLI, has a README, and plans; accelerate configs load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*/config.yaml"))
ACCELERATE = sorted((REPO / "accelerate_configs").glob("*.yaml"))


def test_recipes_exist():
    assert {p.parent.name for p in RECIPES} >= {"tiny", "smollm2-135m", "smollm2-360m", "llama-1b"}


def test_cli_validates_every_recipe():
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "validate", *map(str, RECIPES)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ok: ") == len(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_recipe_has_readme_and_comments(recipe):
    readme = recipe.parent / "README.md"
    text = readme.read_text() if readme.exists() else ""
    assert "accelerate launch" in text or "pretrain run" in text
    text = recipe.read_text()  # the YAML
    assert text.lstrip().startswith("#")
    assert text.count("#") >= 15  # litgpt style: keys are explained


def test_typo_and_wrong_type_exit_1_naming_the_key(tmp_path):
    raw = yaml.safe_load((REPO / "recipes" / "tiny" / "config.yaml").read_text())
    raw["accelerate_config"] = str(REPO / "accelerate_configs" / "cpu.yaml")
    raw["train"]["lerning_rate"] = 0.1
    raw["model"]["num_hidden_layers"] = "four"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert f"{bad}: train.lerning_rate: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("cfg", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_configs_load(cfg):
    from accelerate.commands.config.config_args import load_config_from_file

    assert cfg.read_text().startswith("#")
    config = load_config_from_file(str(cfg))
    assert config.num_processes >= 1
