"""What the command line knows of each stage: its verb, help and extra options, in pipeline order.

Light on purpose: `pretrain --help` builds its parser from this table without importing the stages themselves
(curation, packing and training pull in torch and transformers, seconds of imports). The stage registry
(commands/stages.py) takes each stage's help and options from here; a test checks that both list the same
stages in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CliOption:
    """An extra command-line option of a stage's command (passed to its run function by name)."""

    flag: str
    default: str
    help: str
    when_forced: str | None = None
    """The value `pretrain run --force` passes (None: the default)."""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class StageCommand:
    name: str
    help: str
    main_process_only: bool = True
    """Data stages run on the main process while other ranks wait; training runs on every rank (and is
    launched: its command takes the launch and preflight options)."""
    options: tuple[CliOption, ...] = field(default=())


STAGE_COMMANDS: dict[str, StageCommand] = {
    c.name: c
    for c in (
        StageCommand(
            "curate", "sources -> normalize -> filter -> dedup -> decontaminate -> weighted mix (mix/)"
        ),
        StageCommand("tokenizer", "train (or load) the tokenizer on a sample of the mix (tokenizer/)"),
        StageCommand("pack", "tokenize the mix into shards with a train/val split (tokens/)"),
        StageCommand(
            "train",
            "the training loop; launch with `accelerate launch -m pretrain train RECIPE`",
            main_process_only=False,
            options=(
                CliOption(
                    "--resume",
                    "auto",
                    "'auto' (newest complete checkpoint), 'never', or a checkpoint path",
                    when_forced="never",
                ),
            ),
        ),
    )
}
