"""A preflight check's outcome: ✓ with what was found, or ✗ with the problem and its fix, on one line.

Each library checks what it owns (the trackers' packages, the Hub token, a run folder's checkpoints, ...)
and answers with `Verdict`s; `pretrain preflight` (commands/preflight.py) prints them, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass

PASS_MARK, FAIL_MARK = "✓", "✗"


@dataclass(frozen=True)
class Verdict:
    check: str
    """What was checked, a few words: `eval tasks`, `hub push`, `run folder`."""
    ok: bool
    detail: str
    """✓: what was found; ✗: the problem and what to do about it."""

    @classmethod
    def passed(cls, check: str, detail: str) -> Verdict:
        return cls(check, True, detail)

    @classmethod
    def failed(cls, check: str, detail: str) -> Verdict:
        return cls(check, False, " ".join(detail.split()))

    def line(self) -> str:
        return f"{PASS_MARK if self.ok else FAIL_MARK} {self.check}: {self.detail}"
