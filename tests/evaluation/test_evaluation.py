"""lm-eval glue: `pretrain eval` == the `lm_eval` CLI; live-model eval == saved-checkpoint eval; learning curves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pretrain.commands.evaluate import EvalOptions, evaluate
from pretrain.core.errors import DataError
from pretrain.evaluation.benchmarks import decontamination_texts, read_items
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.evaluation.report import summarize_run


@pytest.fixture(scope="module")
def trained(make_run, tmp_path_factory):
    """A small run trained for a few steps, with two checkpoints and the cloze + bpb tasks."""
    from pretrain.testing import run_train_stage

    out = tmp_path_factory.mktemp("evalrun") / "run"
    recipe = make_run(
        out,
        "eval.enabled=false",
        "eval.tasks=[val_bpb,stdlib_cloze]",
        "eval.limit=12",
        "train.tokens=8192",
        "train.checkpoint.every_steps=8",
    )
    run_train_stage(recipe, resume="never")
    return recipe, out


def _eval(ckpt, **options) -> int:
    return evaluate(ckpt, EvalOptions(**options))


def test_pretrain_eval_matches_lm_eval_cli(trained, tmp_path, capsys):
    _, out = trained
    ckpt = out / "final"
    assert _eval(ckpt, tasks="val_bpb,stdlib_cloze", limit=12) == 0
    ours = json.loads((ckpt / "eval_results.json").read_text())["metrics"]
    cli_out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={ckpt}",
            "--tasks",
            "val_bpb,stdlib_cloze",
            "--include_path",
            str(out / "evals" / "tasks"),
            "--limit",
            "12",
            "--device",
            "cpu",
            "--batch_size",
            "8",
            "--output_path",
            str(cli_out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result_file = next(cli_out.rglob("results_*.json"))
    cli = json.loads(result_file.read_text())["results"]
    assert ours["eval/stdlib_cloze/acc"] == cli["stdlib_cloze"]["acc,none"]
    assert ours["eval/stdlib_cloze/acc_norm"] == cli["stdlib_cloze"]["acc_norm,none"]
    assert ours["eval/val_bpb/bits_per_byte"] == cli["val_bpb"]["bits_per_byte,none"]


def test_live_model_matches_checkpoint(trained):
    from transformers import AutoModelForCausalLM

    from pretrain.tokens.tokenizer import load_tokenizer

    recipe, out = trained
    ckpt = out / "final"
    _eval(ckpt)
    saved = json.loads((ckpt / "eval_results.json").read_text())["metrics"]
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    model.train()
    live = LoopEvaluator(recipe, load_tokenizer(ckpt))(model, step=99, tokens_seen=1)
    assert model.training  # handed back in train mode
    assert live.keys() == saved.keys()
    # the live path scores shared contexts once (evaluation/shared_context.py), the checkpoint path is lm-eval's
    # CLI: accuracies agree exactly, log-likelihoods up to summation order (perplexities exponentiate them)
    for k in live:
        assert live[k] == (saved[k] if "/acc" in k else pytest.approx(saved[k], rel=1e-5)), k
    record = json.loads((out / "evals" / "step-0000099.json").read_text())
    assert record["metrics"] == live
    # both paths record each task's facts: local data (no Hub id), the cloze's chance from its 4 choices
    saved_facts = json.loads((ckpt / "eval_results.json").read_text())["task_facts"]
    assert record["task_facts"] == saved_facts
    assert saved_facts["stdlib_cloze"] == {"split": "test", "num_fewshot": 0, "chance": 0.25}
    assert "chance" not in saved_facts["val_bpb"]


def test_eval_over_run_makes_learning_curves(trained, capsys):
    """#33.9: `pretrain eval OUTPUT_DIR` writes its records, summary and curves into evals/pretrain-eval/,
    never over the run's own in-loop records (the card and the regression alerts read those)."""
    _, out = trained
    own = out / "evals" / "step-0000008.json"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text('{"step": 8, "tokens_seen": 1, "metrics": {"eval/stdlib_cloze/acc": 0.5}}')
    assert _eval(out, tasks="stdlib_cloze", limit=8) == 0
    evals = out / "evals" / "pretrain-eval"
    summary = json.loads((evals / "summary.json").read_text())
    assert [r["step"] for r in summary["rows"]][:2] == [8, 16]
    assert (evals / "learning_curves.png").stat().st_size > 1000
    assert "stdlib_cloze/acc" in (evals / "summary.md").read_text()
    assert json.loads(own.read_text())["metrics"] == {"eval/stdlib_cloze/acc": 0.5}  # untouched
    assert len(json.loads((evals / "step-0000008.json").read_text())["items"]["stdlib_cloze"]["acc"]) == 8


@pytest.mark.slow  # 8 s at load 19: the model-folder test below is the default suite's representative
def test_eval_skips_a_checkpoint_pruned_while_it_is_evaluated(trained, tmp_path, monkeypatch):
    """#33.9: a checkpoint that keep_last removed during `pretrain eval OUTPUT_DIR` became a "step 0" row."""
    import shutil

    from pretrain.commands import evaluate as command

    _, out = trained
    run = tmp_path / "run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("evals", "final"))
    first, *_ = sorted((run / "checkpoints").glob("step-*"))
    real = command.evaluate_one

    def pruned_meanwhile(options, ckpt, place):
        if ckpt == first:
            shutil.rmtree(ckpt)
        return real(options, ckpt, place)

    monkeypatch.setattr(command, "evaluate_one", pruned_meanwhile)
    assert _eval(run, tasks="stdlib_cloze", limit=2) == 0
    steps = [r["step"] for r in json.loads((run / "evals/pretrain-eval/summary.json").read_text())["rows"]]
    assert steps and 0 not in steps and int(first.name.split("-")[1]) not in steps


def test_eval_of_a_model_folder_says_what_it_scores_and_writes_beside_it(trained, tmp_path, capsys):
    """Case 8 of issue #31: on a plain model folder `pretrain eval` wrote evals/ and pretrain.log loose into
    the parent, applied a limit without saying so, `--limit 0` failed and `--output-dir` was ignored."""
    import shutil

    from pretrain.commands.evaluate import limit_of

    _, out = trained
    model = tmp_path / "models" / "tiny"
    shutil.copytree(out / "final", model, ignore=shutil.ignore_patterns("eval_results.json"))
    assert _eval(model, tasks="stdlib_cloze", limit=3) == 0
    assert sorted(p.name for p in model.parent.iterdir()) == ["tiny", "tiny-eval"]
    assert (model.parent / "tiny-eval" / "pretrain.log").exists()
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["task", "metric", "value", "±", "stderr", "items"]
    assert "stdlib_cloze" in table and table.splitlines()[1].split()[-1] == "3"
    assert _eval(model, tasks="stdlib_cloze", limit=2, output_dir=tmp_path / "elsewhere") == 0
    assert json.loads((tmp_path / "elsewhere" / "eval_results.json").read_text())["limit"] == 2
    assert limit_of(EvalOptions(limit=0), None)[0] is None
    recipe, _ = trained
    assert limit_of(EvalOptions(), recipe) == (12, limit_of(EvalOptions(), recipe)[1])
    assert "the recipe's eval.limit" in limit_of(EvalOptions(), recipe)[1]


def test_failing_eval_does_not_raise(trained, monkeypatch):
    recipe, out = trained
    ev = LoopEvaluator(recipe, tokenizer=None)

    class Boom:
        training = True

        def train(self, mode=True):
            self.training = mode

    assert ev(Boom(), step=1, tokens_seen=0) == {}


def test_summarize_empty_run(tmp_path):
    assert summarize_run(tmp_path)["rows"] == []


@pytest.mark.parametrize(
    "line,expected",
    [
        ('{"query": "q", "choices": ["a"], "gold": 3}', "out of range"),
        ('{"query": "q"}', "lacks choices, gold"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_benchmark_files(tmp_path, line, expected):
    f = tmp_path / "b.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(DataError, match=expected):
        read_items(f, "mc_query_choices")


def test_shared_benchmark_formats_read(shared_data):
    assert len(read_items(shared_data / "llmfoundry_eval" / "copa.jsonl", "mc_query_choices")) == 100
    assert read_items(shared_data / "llmfoundry_eval" / "lambada_openai.jsonl", "lambada_context", limit=5)
    wino = read_items(shared_data / "llmfoundry_eval" / "winogrande.jsonl", "winogrande_partial", limit=5)
    assert len(wino[0]["context"]) == 2


def test_decontamination_texts_include_builtin_cloze(trained):
    recipe, _ = trained
    texts, unchecked = decontamination_texts(recipe)
    assert len(texts["stdlib_cloze"]) == 1000 and unchecked == {}


def test_hub_task_offline_is_a_clear_error(trained):
    """`pretrain eval CKPT --tasks hellaswag` offline: one `error:` line saying what to do, no traceback."""
    import os
    import subprocess
    import sys

    _, out = trained
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pretrain",
            "eval",
            str(out / "final"),
            "--tasks",
            "hellaswag",
            "--limit",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "error: lm-eval tasks hellaswag: a dataset could not be fetched from the Hub" in proc.stderr


def test_the_tasks_load_before_the_first_step(make_run, tmp_path, monkeypatch):
    """The in-loop evaluator loads its tasks (lm-eval and `datasets` imports, task data) at the start of
    training, once: the first evaluation only scores, so its cost is that of every later one."""
    from pretrain.commands.stages import stage_output
    from pretrain.train.loop import Trainer

    recipe = make_run(tmp_path / "run", "eval.tasks=[stdlib_cloze]", "eval.limit=4", "train.tokens=4096")
    trainer = Trainer(recipe, stage_output(recipe, "train"), resume="never")
    loaded_at: list[int] = []
    prepare = LoopEvaluator._prepare

    def spy(self):
        if self._live is None:
            loaded_at.append(trainer.state.step)
        return prepare(self)

    monkeypatch.setattr(LoopEvaluator, "_prepare", spy)
    trainer.run()
    evaluator = trainer.setup.evaluator
    assert loaded_at == [0]  # loaded once, before step 1
    assert evaluator.setup_seconds > 0 and evaluator.seconds > 0
    assert len(list(recipe.layout.evals.glob("step-*.json"))) >= 2  # and every evaluation then ran


def test_a_task_that_cannot_load_stops_the_run_before_the_first_step(make_run, tmp_path):
    """A broken benchmark file is the user's to fix: an error naming it before any compute is spent, not an
    evaluation that fails at every 10% of a long run while training goes on."""
    from pretrain.core.errors import PretrainError
    from pretrain.testing import run_train_stage

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"query": "q", "choices": ["a", "b"], "gold": 0}\nnot json\n')
    recipe = make_run(
        tmp_path / "run",
        "eval.tasks=[]",
        f"eval.local_tasks=[{{name: broken_mc, format: mc_query_choices, path: {broken}}}]",
        "train.tokens=4096",
    )
    with pytest.raises(PretrainError, match=r"(?s)broken\.jsonl.*not valid JSON"):
        run_train_stage(recipe, resume="never")
    assert not list(recipe.layout.checkpoints.glob("step-*")) and not recipe.layout.final.exists()


def test_the_summary_shows_validation_bits_per_byte(tmp_path):
    """Case 9 of issue #31: the held-out bits/byte of the validation passes was missing from the summary."""
    from pretrain.core.layout import RunLayout
    from pretrain.evaluation.records import EvalRecord, write_eval_record

    layout = RunLayout(tmp_path)
    record = EvalRecord(
        step=8, tokens_seen=800, tasks=["stdlib_cloze"], metrics={"eval/stdlib_cloze/acc": 0.5}
    )
    write_eval_record(layout, record)
    validation = [
        {"step": 8, "tokens_seen": 800, "bits_per_byte": 2.5},
        {"step": 16, "tokens_seen": 1600, "bits_per_byte": 2.25},
    ]
    summary = summarize_run(tmp_path, validation=validation)
    assert summary["validation"] == validation
    table = layout.eval_summary_md.read_text().splitlines()
    assert table[0] == "| step | tokens | stdlib_cloze/acc | val bits/byte |"
    assert table[2:] == ["| 8 | 800 | 0.5000 | 2.5000 |", "| 16 | 1,600 |  | 2.2500 |"]
    assert layout.learning_curves.stat().st_size > 1000


def test_a_run_whose_checkpoints_are_all_pruned_while_evaluated_is_one_error(
    make_small_recipe, tmp_path, monkeypatch, capsys
):
    """#33 case 9: `pretrain eval OUTPUT_DIR` while training pruned every checkpoint under it printed
    "No evaluations recorded." and exited 1 without an error line."""
    import shutil

    from pretrain.cli import main
    from pretrain.commands import evaluate as evaluate_command
    from pretrain.testing import write_checkpoint

    recipe = make_small_recipe(tmp_path / "run")
    write_checkpoint(recipe, 4, 8)

    def pruned_meanwhile(options, checkpoint, place):
        shutil.rmtree(checkpoint)  # training's keep_last removes it while it is evaluated
        raise OSError(f"{checkpoint}/model.safetensors: No such file or directory")

    monkeypatch.setattr(evaluate_command, "evaluate_one", pruned_meanwhile)
    assert main(["eval", str(recipe.out), "--tasks", "stdlib_cloze"]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "no checkpoint left to evaluate" in err


def test_a_damaged_checkpoint_is_not_evaluated(make_small_recipe, tmp_path, capsys):
    """#33: a truncated model.safetensors in a checkpoint was a safetensors traceback from `pretrain eval`."""
    from pretrain.cli import main
    from pretrain.testing import write_checkpoint

    recipe = make_small_recipe(tmp_path / "run")
    folder = write_checkpoint(recipe, 4, 8)
    (folder / "model.safetensors").write_bytes(
        b"\0" * 100
    )  # sealed empty, now 100 bytes: not what was written
    assert main(["eval", str(folder), "--tasks", "stdlib_cloze"]) == 1
    assert "damaged, not evaluated: model.safetensors: 100 bytes, 0 when written" in capsys.readouterr().err
    assert (
        main(["eval", str(recipe.out), "--tasks", "stdlib_cloze"]) == 1
    )  # a run folder skips it, then says so
    assert "no checkpoint left to evaluate" in capsys.readouterr().err
    logs = "".join(p.read_text() for p in recipe.out.rglob("pretrain.log"))  # the run's eval log says why
    assert "step-0000004: damaged (model.safetensors: 100 bytes, 0 when written" in logs
