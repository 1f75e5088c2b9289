"""The run folder: every path under a recipe's `output_dir`, named once.

    layout = RunLayout(Path("outputs/tiny"))       # or recipe.layout
    layout.tokens, layout.checkpoint(200), layout.eval_record(200)

Only the entries of the run folder are named here. What lies inside a stage's folder belongs to the
module that owns that format (token manifest: `tokens/manifest.py`; checkpoint trainer state:
`train/checkpoint.py`; eval records: `evaluation/records.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_PREFIX = "step-"
MANIFEST = "manifest.json"  # the index of a data stage's folder (mix/, tokens/); its format is that stage's


def step_name(step: int) -> str:
    """`step-0000200`: the name of a checkpoint folder and of its evaluation record."""
    return f"{CHECKPOINT_PREFIX}{step:07d}"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder; nothing is created until a stage writes there."""

    root: Path

    # ------------------------------------------------------------------ stage outputs
    @property
    def mix(self) -> Path:
        """`pretrain curate`: the curated mix (part-*.jsonl + manifest.json)."""
        return self.root / "mix"

    @property
    def tokenizer(self) -> Path:
        """`pretrain tokenizer`: the fast tokenizer + tokenizer_report.json."""
        return self.root / "tokenizer"

    @property
    def tokens(self) -> Path:
        """`pretrain pack`: token shards, document index, manifest, val documents."""
        return self.root / "tokens"

    @property
    def final(self) -> Path:
        """`pretrain train`: the base model (HF folder + card)."""
        return self.root / "final"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / step_name(step)

    # ------------------------------------------------------------------ evaluation
    @property
    def evals(self) -> Path:
        """The in-loop evaluations' records, their summary and learning curves."""
        return self.root / "evals"

    @property
    def command_evals(self) -> Path:
        """`pretrain eval OUTPUT_DIR`'s own records, summary and curves: never over the in-loop ones above."""
        return self.evals / "pretrain-eval"

    def eval_record(self, step: int) -> Path:
        return self.evals / f"{step_name(step)}.json"

    @property
    def eval_summary_json(self) -> Path:
        return self.evals / "summary.json"

    @property
    def eval_summary_md(self) -> Path:
        return self.evals / "summary.md"

    @property
    def learning_curves(self) -> Path:
        return self.evals / "learning_curves.png"

    @property
    def eval_task_yamls(self) -> Path:
        """lm-eval task YAMLs generated for the run's local and built-in tasks."""
        return self.evals / "tasks"

    @property
    def eval_task_data(self) -> Path:
        """The data files those task YAMLs point at."""
        return self.evals / "data"

    # ------------------------------------------------------------------ scaling-law ladder
    @property
    def ladder(self) -> Path:
        """`pretrain ladder`: the rungs' runs, the fitted law, its report and plot."""
        return self.root / "ladder"

    def ladder_rung(self, name: str) -> Path:
        """One rung: an ordinary run folder (its data stages link to this run's)."""
        return self.ladder / "rungs" / name

    @property
    def ladder_fit(self) -> Path:
        """The fitted law of the rungs' final validation losses (scaling/law.py owns the format)."""
        return self.ladder / "fit.json"

    @property
    def ladder_stable_fit(self) -> Path:
        """The law of the stable-phase (peak-lr) validation losses, for checks mid-run."""
        return self.ladder / "fit_stable.json"

    @property
    def ladder_record(self) -> Path:
        """The rungs (shape, tokens, losses) and the target (scaling/ladder_record.py owns the format)."""
        return self.ladder / "ladder.json"

    @property
    def ladder_report(self) -> Path:
        return self.ladder / "report.md"

    @property
    def ladder_plot(self) -> Path:
        """Loss against compute: the rungs and the fitted compute-optimal frontier."""
        return self.ladder / "loss_vs_compute.png"

    # ------------------------------------------------------------------ data-mix search
    @property
    def mixture(self) -> Path:
        """`pretrain mixture`: the proxies' runs, proposal.json, report.md (+ plots), recipe.yaml."""
        return self.root / "mixture"

    def mixture_proxy(self, name: str) -> Path:
        """One proxy: an ordinary run folder (its data stages link to this run's)."""
        return self.mixture / "proxies" / name

    @property
    def mixture_recipe(self) -> Path:
        """The recipe with the proposed weights, which `pretrain run` takes as is."""
        return self.mixture / "recipe.yaml"

    # ------------------------------------------------------------------ run-level files
    @property
    def metrics(self) -> Path:
        """One JSON record per logged step, validation, evaluation and event (train/metrics.py)."""
        return self.root / "metrics.jsonl"

    @property
    def log_file(self) -> Path:
        """Everything the commands run on this folder printed, appended: our log lines and what libraries
        print (lm-eval / datasets progress bars, transformers and Python warnings, datatrove, accelerate),
        which the console does not show (core/progress.py `capture_run_output`)."""
        return self.root / "pretrain.log"

    @property
    def resolved_recipe(self) -> Path:
        """The recipe as run, overrides applied."""
        return self.root / "recipe.resolved.yaml"

    @property
    def curation_report_json(self) -> Path:
        return self.root / "curation_report.json"

    @property
    def curation_report_md(self) -> Path:
        return self.root / "curation_report.md"

    @property
    def curate_work(self) -> Path:
        """Scratch space of curation's tasks (a shared filesystem on Slurm); removed once published."""
        return self.root / ".curate-work"

    @property
    def pack_work(self) -> Path:
        """Scratch space of packing's tasks; removed once published."""
        return self.root / ".pack-work"

    @property
    def lock(self) -> Path:
        """Held by the training process so that two trainings never write one run folder."""
        return self.root / ".lock"

    @property
    def trackers(self) -> Path:
        """accelerate trackers' logs (tensorboard, ...)."""
        return self.root / "trackers"
