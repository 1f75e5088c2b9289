"""Every verb the parser offers has exactly one command behind it: a `VERBS` entry or a registered stage."""

from __future__ import annotations

import argparse

import pytest

from pretrain.cli import build_parser, main
from pretrain.cli.verbs import VERBS, stage_verb
from pretrain.commands.stages import STAGES


def _verbs() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_every_parsed_verb_has_one_command():
    verbs = _verbs()
    assert verbs == set(VERBS) | set(STAGES)
    assert not set(VERBS) & set(STAGES)  # a stage is dispatched through the registry, never twice


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["curate", "--force"], {"name": "curate", "force": True, "launch": None, "preflight": False}),
        (["train", "--no-relaunch"], {"name": "train", "force": False, "launch": None, "preflight": True}),
    ],
)
def test_a_stage_verb_calls_the_stage_command(monkeypatch, argv, expected):
    seen = {}

    def fake_stage_command(recipe, name, force, options, launch, preflight):
        seen.update(name=name, force=force, launch=launch, preflight=preflight)
        return 0

    monkeypatch.setattr("pretrain.cli.verbs.stage_command", fake_stage_command)
    monkeypatch.setattr("pretrain.cli.verbs.load_recipe", lambda path, **_: path)
    assert main([argv[0], "recipes/tiny/config.yaml", *argv[1:]]) == 0
    assert seen == expected  # data stages run no preflight of their own; train does unless --no-preflight


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_is_a_callable_verb(name):
    assert callable(stage_verb(name))


def test_the_stage_commands_are_the_registry_in_its_order():
    from pretrain.commands.stage_commands import STAGE_COMMANDS

    assert list(STAGE_COMMANDS) == list(STAGES)


def test_help_imports_no_heavy_library():
    """Case 10 of issue #31: `pretrain --help` took 8 s, importing torch and transformers through the
    commands. The parser is built from light modules; the commands are imported only to run a verb."""
    import subprocess
    import sys

    code = (
        "import sys; import pretrain.cli as cli; cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'lm_eval') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
