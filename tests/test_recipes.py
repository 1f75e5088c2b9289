"""Every recipe under recipes/ validates through the CLI, has a README, and plans; accelerate configs load."""

from __future__ import annotations

import re
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


KEY_LINE = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w.-]*\s*:(?:\s|$)")  # `key:` or a list item `- key:`
COMMENT_START = re.compile(r"(?:^|(?<=[ \t]))#")  # YAML: `#` starts a comment at line start or after blanks


def comment_lines(text: str) -> set[int]:
    """0-based numbers of the lines holding a comment (a `#` that is not inside a scalar such as `'a # b'`)."""
    scalars = [
        (token.start_mark.index, token.end_mark.index)
        for token in yaml.scan(text, Loader=yaml.SafeLoader)
        if isinstance(token, yaml.ScalarToken)
    ]
    found, offset = set(), 0
    for n, line in enumerate(text.splitlines(keepends=True)):
        for match in COMMENT_START.finditer(line):
            at = offset + match.start()
            if not any(start <= at < end for start, end in scalars):
                found.add(n)
                break
        offset += len(line)
    return found


def uncommented_key_lines(text: str) -> list[str]:
    """`N: line` for every line setting a key with no comment on it or on the line directly above."""
    lines, commented = text.splitlines(), comment_lines(text)
    bare = []
    for n, line in enumerate(lines):
        if not KEY_LINE.match(line) or n in commented:
            continue
        if n > 0 and lines[n - 1].lstrip().startswith("#"):
            continue
        bare.append(f"{n + 1}: {line.strip()}")
    return bare


def test_uncommented_key_lines_are_found():
    text = (
        "# a recipe\nname: x   # named\n# explained\nseed: 1\n\ntrain:\n"
        "  sources:   # the list\n    - name: 'a # b'\n      note: it's fine # ok\n  lr: 3\n"
    )
    assert uncommented_key_lines(text) == ["6: train:", "8: - name: 'a # b'", "10: lr: 3"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_every_key_line_is_commented(recipe):
    bare = uncommented_key_lines(recipe.read_text())
    assert not bare, f"{recipe}: key lines without a `# comment` on or directly above them:\n" + "\n".join(
        bare
    )


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
