"""User-facing errors.

Every error a user can cause (bad recipe, bad data, missing files) is raised as a subclass of
`PretrainError`. The CLI prints `str(error)` on one line per problem and exits with status 1 — no
traceback — so messages must name the file / key / value and say what to do.
"""

from __future__ import annotations


class PretrainError(Exception):
    """Base class for errors caused by the user's input, printed without a traceback."""


class RecipeError(PretrainError):
    """A recipe failed validation. `problems` holds one `file: dotted.key: problem (what to do)` line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _OneLineError(PretrainError):
    """One problem, one line: library messages embedded in it (often multi-line) are folded."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class DataError(_OneLineError):
    """Input data is unreadable, corrupt, empty, or inconsistent with the recipe."""


class StageError(_OneLineError):
    """A stage's inputs are missing or stale (e.g. `pretrain pack` before `pretrain tokenizer`)."""


class MixtureError(_OneLineError):
    """A mixture search cannot start or go on: its target, its candidates or its share bounds are impossible."""


class CurationSubmitted(PretrainError):
    """Curation was handed to a scheduler (Slurm); the mix appears when its jobs finish. Not a failure: exit 0."""


class Interrupted(Exception):
    """A signal (Ctrl-C, a scheduler's SIGTERM) stopped a command after it saved what it could: not a success,
    so the command line exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), and
    `pretrain train ... && pretrain push ...` does not push a half-trained model."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
