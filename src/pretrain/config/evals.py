"""Recipe section `eval`: lm-eval benchmarks run in the loop and on checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pretrain.config.base import Section


class LocalTask(Section):
    """A benchmark read from a local file and turned into an lm-eval task (see evaluation/tasks)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_]+$",
        description="task name (letters, digits, _) used in results, metrics and the model card",
    )
    format: Literal[
        "mc_query_choices", "lambada_context", "winogrande_partial", "blimp_pairs", "text_rolling"
    ] = Field(
        description="layout of the JSONL records: `mc_query_choices` {query, choices, gold} (ARC, "
        "OpenBookQA), `lambada_context` {context, continuation}, `winogrande_partial` "
        "{context_options, continuation, gold}, `blimp_pairs` {sentence_good, sentence_bad}, "
        "`text_rolling` {text} (perplexity)"
    )
    path: str = Field(
        min_length=1, description="JSONL file, one record per line; relative to the recipe file"
    )
    limit: int | None = Field(None, gt=0, description="read only the first N items of the file; null = all")


class EvalConfig(Section):
    enabled: bool = Field(
        True,
        description="run the tasks on the live model during training; false skips in-loop evaluation "
        "(`pretrain eval` still works on checkpoints). The tasks load before the first step: one that cannot "
        "load (unknown name, unreadable file, Hub dataset offline) stops the run there",
    )
    every_fraction: float = Field(
        0.1,
        gt=0,
        le=1,
        description="evaluate at every multiple of this fraction of training steps (0-1, always at the "
        "end); raise it to spend less time evaluating",
    )
    tasks: list[str] = Field(
        default_factory=lambda: ["val_bpb"],
        description="task names: built-in (`val_bpb` held-out bits/byte, `stdlib_cloze`, `position_loss` "
        "held-out loss by position bucket on long documents) or lm-eval tasks such as hellaswag, arc_easy "
        "(their data comes from the Hub)",
    )
    position_buckets: list[Annotated[int, Field(gt=0)]] | None = Field(
        None,
        min_length=1,
        description="upper ends of the position buckets of the `position_loss` task, increasing (positions "
        "1-b1, b1+1-b2, ...; held-out documents longer than the last are scored); null = train.seq_len doubled "
        "up to the longest data stage's seq_len (256, 512, 1024 in tiny-long), or the quarters of train.seq_len",
    )
    local_tasks: list[LocalTask] = Field(
        default_factory=list,
        description="benchmarks read from local JSONL files and turned into lm-eval tasks; "
        "evaluated (and decontaminated against) like `tasks`",
    )
    limit: int | None = Field(
        None,
        gt=0,
        description="max examples per task per evaluation; null = all. Set it to keep in-loop evals short",
    )
    rc_bpb: bool = Field(
        False,
        description="also score every multiple-choice and cloze task as bits per byte of its gold answer given "
        "the context (`eval/<task>/rc_bpb`, OLMES/olmix 'rc bpb'; lower is better), in the loop and in "
        "`pretrain eval`: it keeps moving while a small model's accuracy sits at chance, so such a task can be a "
        "`mixture` target. Costs no extra forward pass",
    )
    batch_size: int = Field(8, gt=0, description="lm-eval batch size (requests per forward pass)")
    num_fewshot: int = Field(
        0,
        ge=0,
        description="in-context examples per request; 0 = each task's own default (zero-shot for most)",
    )

    @model_validator(mode="after")
    def _increasing_buckets(self) -> EvalConfig:
        b = self.position_buckets
        if b is not None and any(lo >= hi for lo, hi in zip(b, b[1:])):
            raise ValueError(f"position_buckets {b}: give increasing upper ends, e.g. [256, 512, 1024]")
        return self
