"""A preflight check's line: ✓ or ✗, the check's name, and one line of detail however the cause was wrapped."""

from __future__ import annotations

from pretrain.core.verdict import Verdict


def test_lines():
    assert Verdict.passed("disk", "1 GB free").line() == "✓ disk: 1 GB free"
    failed = Verdict.failed("launch", "no GPU\n   here;  use cpu.yaml")
    assert not failed.ok and failed.line() == "✗ launch: no GPU here; use cpu.yaml"
