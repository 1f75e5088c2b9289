"""`pretrain ladder`: the design (shapes, budgets, branch points), the orchestration (rungs cached,
branches resumed from their long run's checkpoint, a failed rung named), the fit and its outputs.

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
import shlex

import pytest

from pretrain.cli import main
from pretrain.config import load_recipe
from pretrain.core.errors import PretrainError, RecipeError
from pretrain.planning import ladder_run
from pretrain.planning.fit import fit_scaling_law
from pretrain.planning.fit_law import ScalingFit, ScalingLaw, predict
from pretrain.planning.ladder import Family, LadderError, decay_steps, design_ladder, steps_for_decay_start
from pretrain.planning.ladder_record import read_record
from pretrain.stages import stage_output
from pretrain.train import checkpoint as ckpt
from pretrain.train.metrics import EVENT_CHECKPOINT, EVENT_START, read_records, step_records
from pretrain.train.schedules import lr_multiplier

LAW = ScalingLaw(E=1.8, A=60.0, B=300.0, alpha=0.3, beta=0.3)
TINY_LADDER = ["ladder.budget_unit=target_fraction", "ladder.budgets=[0.1,0.2,0.4]"]


def tiny(tmp_path, *overrides: str):
    return load_recipe(
        "recipes/tiny/config.yaml", overrides=[*TINY_LADDER, *overrides], output_dir=str(tmp_path)
    )


# ---------------------------------------------------------------------------------------------- design
def test_rungs_keep_a_staged_mix_given_in_tokens_as_shares(tmp_path):
    stages = (
        "train.data_stages=[{tokens: 1146880, weights: {stdlib_code: 1}}, "
        "{tokens: 491520, weights: {stdlib_docs: 1}}]"
    )
    recipe = tiny(tmp_path, stages)
    design = design_ladder(recipe)
    for run in design.runs:  # each rung is shorter than the target: its stages' token counts could not add up
        rung = ladder_run.rung_recipe(recipe, design, run)
        assert rung.train.stage_shares() == pytest.approx([0.7, 0.3])
        assert [st.weights for st in rung.train.data_stages] == [{"stdlib_code": 1}, {"stdlib_docs": 1}]


def test_design_spans_ten_x_in_the_recipes_family(tmp_path):
    recipe = tiny(tmp_path, "ladder.sizes=4")
    design = design_ladder(recipe)
    sizes = design.sizes()
    assert len(sizes) == 4 and sizes[-1] / sizes[0] >= 10
    assert sizes[-1] < design.target_non_embedding_params  # every rung is smaller than the target
    family = Family.of(recipe)
    for run in design.runs:
        shape = run.shape
        assert (
            shape.hidden_size == shape.num_attention_heads * family.head_dim == shape.num_attention_heads * 32
        )
        assert shape.intermediate_size == 3 * shape.hidden_size  # the recipe's MLP ratio (384 / 128)
        assert run.tokens == run.steps * recipe.train.global_batch_tokens
    # budgets are fractions of the target's tokens: the same three lengths for every size
    assert sorted({r.tokens for r in design.runs}) == sorted({r.tokens for r in design.runs if r.size == 0})


def test_branches_share_the_long_runs_lr_up_to_their_decay(tmp_path):
    recipe = tiny(tmp_path)
    design = design_ladder(recipe)
    schedule = recipe.train.schedule
    for run in design.runs:
        long_run = next(r for r in design.runs if r.size == run.size and r.branch_of is None)
        # the long run of a size comes first: its checkpoints exist when its branches start
        assert design.runs.index(long_run) <= design.runs.index(run)
        assert run.steps - decay_steps(run.steps, design.decay_fraction) == run.decay_start
        assert run.decay_start % long_run.checkpoint_every == 0  # a checkpoint exists at every branch point
        branch = schedule.model_copy(update={"warmup_steps": run.warmup_steps})
        long_schedule = schedule.model_copy(update={"warmup_steps": long_run.warmup_steps})
        lrs = [lr_multiplier(t, run.steps, branch) for t in range(run.decay_start)]
        assert lrs == [lr_multiplier(t, long_run.steps, long_schedule) for t in range(run.decay_start)]
        assert lr_multiplier(run.decay_start, run.steps, branch) < 1.0  # and decays from there


@pytest.mark.parametrize("start,fraction", [(14, 0.3), (56, 0.3), (50, 0.2), (7, 0.5), (1, 0.1)])
def test_steps_for_decay_start_is_exact(start, fraction):
    steps = steps_for_decay_start(start, fraction)
    assert steps - decay_steps(steps, fraction) == start


def test_gpu_recipes_have_ladders_within_a_fraction_of_their_compute():
    for name in ("smollm2-135m", "smollm2-360m", "llama-1b"):
        recipe = load_recipe(f"recipes/{name}/config.yaml", check_files=False)
        design = design_ladder(recipe)
        target = 6 * design.target_non_embedding_params * design.target_tokens
        assert 3 <= len(design.long_runs()) <= 6
        assert design.sizes()[-1] / design.sizes()[0] >= 10
        assert design.flops < 0.2 * target, name  # the forecast costs a small part of the run


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "override,problem",
    [
        ("ladder.sizes=2", r"ladder\.sizes: .*greater than or equal to 3"),
        ("ladder.budgets=[0.4]", r"ladder\.budgets: .*at least 2"),
        ("ladder.smallest=0.1", r"must span at least 10x"),
        ("ladder.budgets=[0.2,0.2]", r"must be distinct"),
    ],
)
def test_too_few_rungs_is_a_recipe_error(tmp_path, override, problem):
    with pytest.raises(RecipeError, match=problem):
        tiny(tmp_path, override)


def test_a_budget_too_short_for_min_steps_names_the_rung(tmp_path):
    with pytest.raises(LadderError, match=r"budget 0\.01 .* of size s0 .* under ladder\.min_steps=10"):
        design_ladder(tiny(tmp_path, "ladder.budgets=[0.01,0.4]"))


def test_a_budget_below_the_smallest_rung_is_an_error(tmp_path):
    with pytest.raises(
        LadderError, match=r"--budget-flops 1e\+10: .* the smallest rung .* is below the smallest model"
    ):
        design_ladder(tiny(tmp_path), budget_flops=1e10)
    assert design_ladder(tiny(tmp_path), budget_flops=1e15).target_source.startswith("Chinchilla-optimal")


def test_a_model_without_llama_keys_is_an_error(tmp_path):
    recipe = tiny(tmp_path)
    recipe.model = recipe.model.model_copy(update={"model_type": "gpt2"})
    recipe.model.__pydantic_extra__ = {"n_embd": 64, "n_layer": 2, "n_head": 2}
    with pytest.raises(LadderError, match=r"model_type gpt2 sets none of hidden_size"):
        design_ladder(recipe)


# ---------------------------------------------------------------------------------------------- orchestration
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
    monkeypatch.setattr(ladder_run, "run_stage", training)
    monkeypatch.setattr(ladder_run, "BOOTSTRAP", 30)  # intervals are tested in test_fit.py; keep this fast
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
        ladder_run.RungResult(run, float(LAW.loss(run.non_embedding_params, run.tokens)), None)
        for run in design.runs[:4]
    ]
    with pytest.raises(LadderError, match=r"ladder fit \(4 rungs\): .*4 points; the law has 5 parameters"):
        ladder_run._fit_and_report(recipe, design, results, [], 1.0)


def test_ladder_cli_rejects_bad_budgets(tmp_path, capsys):
    base = ["ladder", "recipes/tiny/config.yaml", "--output-dir", str(tmp_path), "--no-relaunch"]
    assert main([*base, "--budget-flops", "-1"]) == 1
    assert "--budget-flops must be positive" in capsys.readouterr().err
    assert main([*base, "--budget-gpu-hours", "3"]) == 1
    assert "--budget-gpu-hours needs --gpu" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- Slurm
# No Slurm here: a stub `sbatch` on PATH keeps each submitted script and answers a job id as
# `sbatch --parsable` does; the test then runs the scripts' commands the way the nodes would.
SLURM = [*TINY_LADDER, "ladder.sizes=4", "ladder.executor=slurm"]
SLURM_SETTINGS = (
    "ladder.slurm={partition: gpu, time: '02:00:00', gpus_per_task: 1, sbatch_args: {account: lm}}"
)


@pytest.fixture()
def sbatch(tmp_path, monkeypatch):
    """A stub `sbatch` that copies the script to `<tmp>/submitted/<id>.sbatch` and prints `<id>;cluster`."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    kept.mkdir()
    stub = bin_dir / "sbatch"
    stub.write_text(
        f'#!/bin/sh\n[ "$1" = --parsable ] || exit 2\nid=$((4100 + $(ls {kept} | wc -l)))\n'
        f'cp "$2" {kept}/$id.sbatch\necho "$id;cluster"\n'
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept


def _data_stages_done(monkeypatch):
    """The fake training builds no data stages: treat them as current (the rungs' currency stays real)."""
    real = ladder_run.is_current
    data = {n for n, st in ladder_run.STAGES.items() if st.main_process_only}
    monkeypatch.setattr(ladder_run, "is_current", lambda r, name: name in data or real(r, name))


def _command(script: str) -> list[str]:
    """The `pretrain` arguments of a batch script's last line, with the shell's expansion of Slurm's variables."""
    argv = shlex.split(os.path.expandvars(script.strip().splitlines()[-1]))
    assert argv[:3] == ["python", "-m", "pretrain"]
    return argv[3:]


def test_slurm_job_array_fits_the_same_law_as_the_sequential_ladder(tmp_path, monkeypatch, sbatch, capsys):
    sequential = tiny(tmp_path / "sequential", "ladder.sizes=4")
    design = design_ladder(sequential)
    training = FakeTraining(design)
    monkeypatch.setattr(ladder_run, "run_stage", training)
    monkeypatch.setattr(ladder_run, "BOOTSTRAP", 30)
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
    assert "#SBATCH --array=0-3\n" in rungs and "--dependency" not in rungs
    assert "#SBATCH --dependency=afterok:4100\n" in fit and "--array" not in fit
    for script in (rungs, fit):
        assert "#SBATCH --partition=gpu\n" in script and "#SBATCH --time=02:00:00\n" in script
        assert "#SBATCH --account=lm\n" in script
    assert "#SBATCH --gpus-per-task=1\n" in rungs and "#SBATCH --cpus-per-task=8\n" in rungs
    assert _command(rungs)[-2:] == ["--size-index", "$SLURM_ARRAY_TASK_ID"]
    assert _command(fit)[-1] == "--fit-only"

    # while the jobs are pending: a second `pretrain ladder` is refused with their ids; the fit names a rung
    assert main(cli) == 1
    assert re.search(
        r"jobs 4100 \(rungs\) and 4101 \(fit\) were submitted at .* wait for them", capsys.readouterr().err
    )
    assert main(_command(fit)) == 1
    assert "error: ladder rung s0-b2 (size 0) has not finished" in capsys.readouterr().err
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert main(_command(rungs)) == 1
    assert re.search(
        r"error: ladder --size-index 4: the ladder of .* has 4 sizes \(0-3\)", capsys.readouterr().err
    )

    # the array tasks, in the order Slurm happens to run them (the range read from the script)
    first, last = map(int, re.search(r"--array=(\d+)-(\d+)", rungs).groups())
    order = random.Random(7).sample(range(first, last + 1), last - first + 1)
    assert order != sorted(order)
    for task in order:
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        assert main(_command(rungs)) == 0
    assert sorted(name for name, _ in training.calls) == sorted(r.name for r in design.runs)
    for task in order:  # each task trains its size's long run first, then its branches
        names = [name for name, _ in training.calls if name.startswith(f"s{task}-")]
        assert names == [r.name for r in design.runs if r.size == task]
    assert main(_command(fit)) == 0
    capsys.readouterr()

    slurm = load_recipe("recipes/tiny/config.yaml", overrides=[*SLURM, SLURM_SETTINGS], output_dir=str(out))
    assert slurm.layout.ladder_fit.read_text() == expected  # the same points, the same law and intervals
    assert read_record(slurm.layout).launcher == ladder_run.SLURM_LAUNCHER
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
    monkeypatch.setattr(ladder_run, "run_stage", FakeTraining(design_ladder(recipe)))
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
