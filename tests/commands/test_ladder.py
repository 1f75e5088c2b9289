"""`pretrain ladder` (commands/ladder.py, commands/ladder_rungs.py, scaling/ladder_fit.py): rungs trained once
and cached, branches resumed from their long run's checkpoint, a failed rung named, the fit and its outputs,
and the Slurm submission (a job array per size, the fit after it) giving the same law.

Training is replaced by a fake train stage that writes what a run writes (validations in metrics.jsonl,
checkpoints, a published final/) with losses from a known law, so these tests take seconds; the real
tiny ladder is measured in the closing note (and `test_tiny_ladder_trains_end_to_end`, slow).
"""

from __future__ import annotations

import json
import math
import os
import random
import re

import dill
import pytest

from pretrain.cli import main
from pretrain.commands import derive
from pretrain.commands import ladder as ladder_run
from pretrain.commands.ladder_rungs import rung_recipe
from pretrain.commands.stages import stage_output
from pretrain.config import load_recipe
from pretrain.core.errors import PretrainError, RecipeError
from pretrain.scaling import ladder_fit
from pretrain.scaling.fit import fit_scaling_law
from pretrain.scaling.ladder import LadderError, design_ladder
from pretrain.scaling.ladder_record import RungResult, read_record
from pretrain.scaling.law import ScalingFit, ScalingLaw, predict
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import EVENT_CHECKPOINT, EVENT_START, read_records, step_records

LAW = ScalingLaw(E=1.8, A=60.0, B=300.0, alpha=0.3, beta=0.3)
TINY_LADDER = ["ladder.budget_unit=target_fraction", "ladder.budgets=[0.1,0.2,0.4]"]


def tiny(tmp_path, *overrides: str):
    return load_recipe(
        "recipes/tiny/config.yaml", overrides=[*TINY_LADDER, *overrides], output_dir=str(tmp_path)
    )


def fake_training(monkeypatch, training) -> None:
    """The train stage of every rung (commands/derive.py) and the data stages (commands/ladder.py) faked."""
    monkeypatch.setattr(ladder_run, "run_stage", training)
    monkeypatch.setattr(derive, "run_stage", training)
    monkeypatch.setattr(ladder_fit, "BOOTSTRAP", 30)  # intervals are tested in test_fit.py; keep this fast


# ---------------------------------------------------------------------------------------------- orchestration
def test_rungs_keep_a_staged_mix_given_in_tokens_as_shares(tmp_path):
    stages = (
        "train.data_stages=[{tokens: 1146880, weights: {stdlib_code: 1}}, "
        "{tokens: 491520, weights: {stdlib_docs: 1}}]"
    )
    recipe = tiny(tmp_path, stages)
    design = design_ladder(recipe)
    for run in design.runs:  # each rung is shorter than the target: its stages' token counts could not add up
        rung = rung_recipe(recipe, design, run)
        assert rung.train.stage_shares() == pytest.approx([0.7, 0.3])
        assert [st.weights for st in rung.train.data_stages] == [{"stdlib_code": 1}, {"stdlib_docs": 1}]
        # the stated lr rule (scaling/lr_transfer.py): AdamW lr x sqrt(width ratio), Muon's unchanged
        ratio = recipe.model.hidden_size / rung.model.hidden_size
        assert rung.train.optimizer.lr == pytest.approx(
            recipe.train.optimizer.lr * min(4.0, max(1.0, ratio**0.5))
        )
        assert rung.train.optimizer.muon.lr == recipe.train.optimizer.muon.lr


class FakeTraining:
    """Stands in for the train stage: writes a run's metrics, checkpoints and final/ with losses from LAW."""

    def __init__(self, design, fail: str | None = None, error: Exception | None = None):
        self.runs = {r.name: r for r in design.runs}
        self.calls: list[tuple[str, str]] = []
        self.fail, self.error = fail, error

    def __call__(self, recipe, name, force=False, **options):
        if name != "train":
            return None  # data stages: nothing to build in these tests
        run = self.runs[recipe.layout.root.name]
        self.calls.append((run.name, options["resume"]))
        if run.name == self.fail:
            raise self.error
        layout, batch = recipe.layout, recipe.train.global_batch_tokens
        first = run.decay_start if run.branch_of else 0
        lines = []
        for step in range(first + 1, run.steps + 1):
            tokens = step * batch
            if step % 4 == 0 or step == run.steps:
                decayed = step == run.steps
                loss = float(LAW.loss(run.non_embedding_params, tokens)) * (1.0 if decayed else 1.05)
                lines.append(
                    {"time": step, "step": step, "tokens_seen": tokens, "val/loss": loss, "val/bpb": loss / 2}
                )
            if run.checkpoint_every and step % run.checkpoint_every == 0:
                folder = layout.checkpoint(step)
                (folder / ckpt.TRAINER_STATE).mkdir(parents=True)
                (folder / ckpt.WEIGHTS).write_text("")
                (folder / ckpt.TRAINER_STATE / ckpt.COMPLETE).write_text("ok")
                lines.append({"time": step, "step": step, "event": EVENT_CHECKPOINT})
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
        stage_output(recipe, "train").publish(lambda tmp: {"steps": run.steps})
        return layout.final


@pytest.fixture()
def fake(monkeypatch, tmp_path):
    recipe = tiny(tmp_path, "ladder.sizes=4")
    training = FakeTraining(design_ladder(recipe))
    fake_training(monkeypatch, training)
    return recipe, training


def test_ladder_trains_every_rung_once_and_fits_the_law(fake):
    recipe, training = fake
    path = ladder_run.run_ladder(recipe)
    design = design_ladder(recipe)
    assert [name for name, _ in training.calls] == [r.name for r in design.runs]
    for run in design.runs:  # branches resume from their long run's checkpoint at the decay start
        resume = dict(training.calls)[run.name]
        if run.branch_of:
            assert resume == str(
                recipe.layout.ladder_rung(run.branch_of) / "checkpoints" / f"step-{run.decay_start:07d}"
            )
        else:
            assert resume == "auto"
    fit = ScalingFit.from_json(path.read_text())
    assert len(fit.losses) == len(design.runs)
    # noiseless points from LAW: the fit predicts them (and the target) closely
    target = LAW.loss(design.target_non_embedding_params, design.target_tokens)
    assert predict(fit, design.target_non_embedding_params, design.target_tokens).value == pytest.approx(
        target, rel=0.01
    )
    layout = recipe.layout
    assert layout.ladder_report.exists() and layout.ladder_plot.stat().st_size > 10_000
    assert layout.ladder_stable_fit.exists()  # long runs validated at the peak lr before their decay
    record = read_record(layout)
    assert {r.run.name for r in record.rungs} == {r.name for r in design.runs}
    report = layout.ladder_report.read_text()
    assert (
        "Forecast of the target's final validation loss" in report
        and "`ladder.executor: slurm` submits one job array, a task per size" in report
    )
    # 4 sizes: the law of the 3 smaller ones forecasts the largest one's longest run (noiseless: exactly)
    largest = max(design.runs, key=lambda r: (r.non_embedding_params, r.tokens))
    assert record.backtest["params"] == largest.non_embedding_params
    assert record.backtest["tokens"] == largest.tokens
    assert record.backtest["predicted"] == pytest.approx(record.backtest["actual"], rel=0.01)
    assert "Backtest (the same extrapolation one rung down)" in report
    # beside the law of record, the same points with N counting embeddings too (Chinchilla's convention)
    view = record.target["all_params_view"]
    assert view["params"] == 1_377_408  # the tiny model, embeddings included
    refit = fit_scaling_law(
        [r.run.params for r in record.rungs],
        [r.run.tokens for r in record.rungs],
        [r.final_loss for r in record.rungs],
        bootstrap=0,
    )
    assert view["law"]["alpha"] == pytest.approx(refit.law.alpha, rel=1e-6)
    assert view["forecast"]["value"] == pytest.approx(
        float(refit.law.loss(view["params"], design.target_tokens)), rel=1e-6
    )
    assert "Counting all parameters (embeddings too, Chinchilla's convention" in report

    training.calls.clear()  # a second ladder finds every rung current and trains nothing
    ladder_run.run_ladder(recipe)
    assert training.calls == []


def test_a_changed_long_run_retrains_its_branches(fake, tmp_path):
    recipe, training = fake
    ladder_run.run_ladder(recipe)
    training.calls.clear()
    # a different lr changes every rung's fingerprint: all retrain, branches from the new long runs
    changed = load_recipe(
        "recipes/tiny/config.yaml",
        overrides=[*TINY_LADDER, "ladder.sizes=4", "train.optimizer.lr=0.002"],
        output_dir=str(tmp_path),
    )
    ladder_run.run_ladder(changed)
    assert len(training.calls) == len(design_ladder(changed).runs)


@pytest.mark.parametrize(
    "error,detail",
    [
        (PretrainError("loss spiked for 3 consecutive steps"), "loss spiked for 3 consecutive steps"),
        (RuntimeError("CUDA out of memory"), "RuntimeError: CUDA out of memory"),
    ],
)
def test_a_failed_rung_is_an_error_naming_it(fake, error, detail):
    recipe, training = fake
    training.fail, training.error = "s1-b0", error
    with pytest.raises(
        LadderError, match=rf"ladder rung s1-b0 \(.*\) failed in .*s1-b0: {detail}\. Finished rungs are kept"
    ):
        ladder_run.run_ladder(recipe)
    assert recipe.layout.ladder_rung("s0-b2").joinpath("final").exists()  # finished rungs stay


def test_too_few_rungs_for_the_fit_is_an_error(fake):
    recipe, _ = fake
    design = design_ladder(recipe)
    results = [
        RungResult(run, float(LAW.loss(run.non_embedding_params, run.tokens)), None)
        for run in design.runs[:4]
    ]
    with pytest.raises(LadderError, match=r"ladder fit \(4 rungs\): .*4 points; the law has 5 parameters"):
        ladder_fit.fit_and_report(recipe, design, results, [], 1.0)


def test_ladder_cli_rejects_bad_budgets(tmp_path, capsys):
    base = ["ladder", "recipes/tiny/config.yaml", "--output-dir", str(tmp_path), "--no-relaunch"]
    with pytest.raises(SystemExit) as exited:  # argparse range-checks it: exit 2, one usage line
        main([*base, "--budget-flops", "-1"])
    assert exited.value.code == 2
    assert "argument --budget-flops: '-1' is not a finite number > 0" in capsys.readouterr().err
    assert main([*base, "--budget-gpu-hours", "3"]) == 1
    assert "--budget-gpu-hours needs --gpu" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- Slurm
# No Slurm here: a stub `sbatch` on PATH answers a job id as sbatch does ("Submitted batch job N") and keeps
# the script. The jobs are datatrove executors (core/slurm.py) pickled with dill into each step's logs folder;
# the test unpickles them and runs each task's `pretrain ladder` command in this process, as a node would.
SLURM = [*TINY_LADDER, "ladder.sizes=4", "ladder.executor=slurm"]
SLURM_SETTINGS = (
    "ladder.slurm={partition: gpu, time: '02:00:00', gpus_per_task: 1, sbatch_args: {account: lm}}"
)


@pytest.fixture()
def sbatch(tmp_path, monkeypatch):
    """A stub `sbatch` that copies the script to `<tmp>/submitted/<id>.sbatch` and prints its job id."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    kept.mkdir()
    stub = bin_dir / "sbatch"
    stub.write_text(
        f"#!/bin/sh\nid=$((4100 + $(ls {kept} | wc -l)))\n"
        f'for last; do :; done\ncp "$last" {kept}/$id.sbatch\necho "Submitted batch job $id"\n'
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept


def _data_stages_done(monkeypatch):
    """The fake training builds no data stages: treat them as current (the rungs' currency stays real)."""
    real = ladder_run.is_current
    data = set(ladder_run.data_stage_names())
    monkeypatch.setattr(ladder_run, "is_current", lambda r, name: name in data or real(r, name))


def _task_commands(recipe, step: str, tasks: int) -> list[list[str]]:
    """The `pretrain` arguments each task of a submitted step runs (its pickled pipeline, rank filled in)."""
    pickled = recipe.layout.ladder / ladder_run.SLURM_DIR / step / "executor.pik"
    executor = dill.loads(pickled.read_bytes())
    (task,) = executor.pipeline
    assert executor.tasks == tasks and task.argv[:3] == ["python", "-m", "pretrain"]
    return [[a.replace("{rank}", str(rank)) for a in task.argv[3:]] for rank in range(tasks)]


def test_slurm_job_array_fits_the_same_law_as_the_sequential_ladder(tmp_path, monkeypatch, sbatch, capsys):
    sequential = tiny(tmp_path / "sequential", "ladder.sizes=4")
    design = design_ladder(sequential)
    training = FakeTraining(design)
    fake_training(monkeypatch, training)
    _data_stages_done(monkeypatch)
    expected = ladder_run.run_ladder(sequential).read_text()

    out = tmp_path / "slurm"
    cli = ["ladder", "recipes/tiny/config.yaml", "--output-dir", str(out)]
    cli += [arg for key in [*SLURM, SLURM_SETTINGS] for arg in ("--set", key)]
    training.calls.clear()
    assert main(cli) == 0
    printed = capsys.readouterr().out
    assert "rungs job array 4100 (4 tasks, one per size), fit job 4101 after it" in printed
    assert training.calls == []  # submitting trains nothing here
    rungs, fit = (sbatch / "4100.sbatch").read_text(), (sbatch / "4101.sbatch").read_text()
    assert "#SBATCH --array=0-3\n" in rungs and "#SBATCH --array=0-0\n" in fit
    for script in (rungs, fit):
        assert "#SBATCH --partition=gpu\n" in script and "#SBATCH --time=02:00:00\n" in script
        assert "#SBATCH --account=lm\n" in script and "launch_pickled_pipeline" in script
    assert "#SBATCH --gpus=1\n" in rungs and "#SBATCH --cpus-per-task=8\n" in rungs
    slurm = load_recipe("recipes/tiny/config.yaml", overrides=[*SLURM, SLURM_SETTINGS], output_dir=str(out))
    rung_tasks = _task_commands(slurm, "rungs", 4)
    assert [argv[-2:] for argv in rung_tasks] == [["--size-index", str(k)] for k in range(4)]
    (fit_task,) = _task_commands(slurm, "fit", 1)
    assert fit_task[-1] == "--fit-only"

    # while the jobs are pending: a second `pretrain ladder` is refused with their ids; the fit names a rung
    assert main(cli) == 1
    assert re.search(r"ladder jobs 4100, 4101 were submitted at .* wait for them", capsys.readouterr().err)
    assert main(fit_task) == 1
    assert "error: ladder rung s0-b2 (size 0) has not finished" in capsys.readouterr().err
    assert main([*rung_tasks[0][:-1], "4"]) == 1
    assert re.search(
        r"error: ladder --size-index 4: the ladder of .* has 4 sizes \(0-3\)", capsys.readouterr().err
    )

    # the array tasks, in the order Slurm happens to run them
    order = random.Random(7).sample(range(4), 4)
    assert order != sorted(order)
    for task in order:
        assert main(rung_tasks[task]) == 0
    assert sorted(name for name, _ in training.calls) == sorted(r.name for r in design.runs)
    for task in order:  # each task trains its size's long run first, then its branches
        names = [name for name, _ in training.calls if name.startswith(f"s{task}-")]
        assert names == [r.name for r in design.runs if r.size == task]
    assert main(fit_task) == 0
    capsys.readouterr()

    assert slurm.layout.ladder_fit.read_text() == expected  # the same points, the same law and intervals
    assert read_record(slurm.layout).launcher == ladder_fit.SLURM_LAUNCHER
    assert "Slurm job array" in slurm.layout.ladder_report.read_text()
    training.calls.clear()  # done: `pretrain ladder` fits here and submits nothing
    assert main(cli) == 0
    assert training.calls == [] and sorted(p.name for p in sbatch.iterdir()) == ["4100.sbatch", "4101.sbatch"]


def test_slurm_ladder_needs_its_settings_and_sbatch(tmp_path, monkeypatch, capsys):
    with pytest.raises(RecipeError, match=r"ladder: .*executor slurm needs a `slurm:` block"):
        tiny(tmp_path, "ladder.executor=slurm")
    recipe = tiny(tmp_path, "ladder.executor=slurm", SLURM_SETTINGS)
    assert recipe.ladder.slurm.partition == "gpu" and recipe.ladder.slurm.qos == "normal"  # shared defaults
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    fake_training(monkeypatch, FakeTraining(design_ladder(recipe)))
    _data_stages_done(monkeypatch)
    cli = ["ladder", "recipes/tiny/config.yaml", "--output-dir", str(tmp_path)]
    assert main([*cli, "--set", "ladder.executor=slurm", "--set", SLURM_SETTINGS]) == 1
    assert "error: sbatch is not on PATH; submit from a Slurm login node" in capsys.readouterr().err
    multi_node = tmp_path / "two-nodes.yaml"
    multi_node.write_text("num_machines: 2\nnum_processes: 2\n")
    slurm = ["--set", "ladder.executor=slurm", "--set", SLURM_SETTINGS]
    # 2 processes of 8 sequences make the recipe's batch of 4,096 tokens, so the launch itself is the error
    two = ["--set", f"accelerate_config={multi_node}", "--set", "train.micro_batch_size=8"]
    assert main([*cli, *slurm, *two]) == 1
    assert "asks for 2 machines, but each array task (one size) runs on one node" in capsys.readouterr().err


def test_an_array_task_refuses_data_stages_that_are_not_current(tmp_path, capsys):
    cli = ["ladder", "recipes/tiny/config.yaml", "--output-dir", str(tmp_path), "--size-index", "0"]
    assert main(cli) == 1
    assert re.search(
        r"error: ladder --size-index 0: the recipe's \w+ stage is not current", capsys.readouterr().err
    )


@pytest.mark.slow
def test_tiny_ladder_trains_end_to_end(make_run, tmp_path):
    """Real training through the train stage: 3 sizes x 2 budgets on the small run's data (~1-2 min)."""
    recipe = make_run(
        tmp_path / "run",
        "model.hidden_size=128",
        "model.intermediate_size=256",
        "model.num_hidden_layers=4",
        "model.num_attention_heads=4",
        "model.num_key_value_heads=4",
        "train.tokens=51200",
        "ladder.sizes=3",
        "ladder.budget_unit=target_fraction",
        "ladder.budgets=[0.2,0.4]",
    )
    fit = ScalingFit.from_json(ladder_run.run_ladder(recipe).read_text())
    assert len(fit.losses) == 6 and all(math.isfinite(v) for v in fit.losses)
    record = read_record(recipe.layout)
    for rung in record.rungs:  # a branch ends where a run of its length would: the same step count
        metrics = recipe.layout.ladder_rung(rung.run.name) / "metrics.jsonl"
        records = read_records(metrics)
        steps = [r["step"] for r in step_records(records)]
        assert max(steps) == rung.run.steps
        if rung.run.branch_of:
            assert min(steps) > rung.run.decay_start  # it trained only its decay
            (start,) = [r for r in records if r.get("event") == EVENT_START]
            assert start["step"] == rung.run.decay_start  # its start record says where it began
