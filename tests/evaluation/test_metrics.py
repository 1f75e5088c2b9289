"""evaluation/metrics.py and its views: the console line, the learning-curve plots, the card's model-index."""

from __future__ import annotations

from pathlib import Path

import lm_eval
import yaml

from pretrain.commands.card import eval_results
from pretrain.evaluation.metrics import eval_line, task_facts
from pretrain.evaluation.report import curves_figure


class _TaskYamlLoader(yaml.SafeLoader):
    """lm-eval's task YAMLs carry `!function module.name` tags; their value is irrelevant here."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _lm_eval_task_config(name: str) -> dict:
    path = Path(lm_eval.__file__).parent / "tasks" / name / f"{name}.yaml"
    return yaml.load(path.read_text(), Loader=_TaskYamlLoader)


# lm-eval's results for one Hub task (its config exactly as lm-eval ships it) and two local tasks
HELLASWAG = _lm_eval_task_config("hellaswag")
RESULTS = {
    "results": {
        "hellaswag": {"alias": "hellaswag", "acc,none": 0.26, "acc_norm,none": 0.27},
        "stdlib_cloze": {"acc,none": 0.61, "acc_norm,none": 0.66},
        "val_bpb": {
            "word_perplexity,none": 598699.86,
            "byte_perplexity,none": 4.05,
            "bits_per_byte,none": 2.02,
        },
    },
    "configs": {
        "hellaswag": HELLASWAG,
        "stdlib_cloze": {"task": "stdlib_cloze", "dataset_path": "json", "test_split": "test"},
        "val_bpb": {"task": "val_bpb", "dataset_path": "json", "test_split": "test"},
    },
    "n-shot": {"hellaswag": 0, "stdlib_cloze": 0, "val_bpb": 0},
}
FLAT = {
    "eval/hellaswag/acc": 0.26,
    "eval/hellaswag/acc_norm": 0.27,
    "eval/stdlib_cloze/acc": 0.61,
    "eval/stdlib_cloze/acc_norm": 0.66,
    "eval/val_bpb/word_perplexity": 598699.86,
    "eval/val_bpb/byte_perplexity": 4.05,
    "eval/val_bpb/bits_per_byte": 2.02,
}
CHANCE = {"hellaswag": 0.25, "stdlib_cloze": 0.25}


def test_task_facts_name_the_hub_dataset_or_none_for_local_files():
    facts = task_facts(RESULTS, CHANCE)
    assert facts["hellaswag"] == {
        "dataset": HELLASWAG["dataset_path"],  # Rowan/hellaswag
        "split": "validation",
        "num_fewshot": 0,
        "chance": 0.25,
    }
    assert "dataset" not in facts["stdlib_cloze"] and facts["stdlib_cloze"]["chance"] == 0.25
    assert "chance" not in facts["val_bpb"]


def test_console_line_shows_scores_chance_and_bits_per_byte_only():
    line = eval_line(40, FLAT, task_facts(RESULTS, CHANCE), 3.14)
    assert line == (
        "eval at step 40: hellaswag acc 0.260, acc_norm 0.270 (chance 0.250); "
        "stdlib_cloze acc 0.610, acc_norm 0.660 (chance 0.250); val_bpb 2.0200 bits/byte (3.1 s)"
    )


def test_model_index_uses_hub_dataset_ids_and_leaves_out_derived_perplexities():
    summary = {"final": FLAT, "tasks": task_facts(RESULTS, CHANCE)}
    rows = {(r.dataset_name, r.metric_type): r for r in eval_results(summary)}
    assert set(rows) == {
        ("hellaswag", "acc"),
        ("hellaswag", "acc_norm"),
        ("stdlib_cloze", "acc"),
        ("stdlib_cloze", "acc_norm"),
        ("val_bpb", "bits_per_byte"),
    }
    assert rows["hellaswag", "acc"].dataset_type == "Rowan/hellaswag"
    assert rows["hellaswag", "acc"].dataset_split == "validation"
    assert rows["stdlib_cloze", "acc"].dataset_type == "stdlib_cloze"  # a built-in task: our name
    assert rows["val_bpb", "bits_per_byte"].metric_value == 2.02


def test_plots_draw_chance_on_accuracies_and_perplexity_on_a_log_axis():
    summary = {
        "metrics": ["eval/lambada/perplexity", "eval/stdlib_cloze/acc", "eval/val_bpb/bits_per_byte"],
        "rows": [
            {
                "step": s,
                "tokens_seen": s * 100,
                "eval/lambada/perplexity": p,
                "eval/stdlib_cloze/acc": a,
                "eval/val_bpb/bits_per_byte": b,
            }
            for s, p, a, b in ((10, 9000.0, 0.3, 3.1), (20, 300.0, 0.45, 2.5), (30, 40.0, 0.6, 2.1))
        ],
        "tasks": {"stdlib_cloze": {"chance": 0.25}},
    }
    fig = curves_figure(summary)
    ppl, acc, bpb = fig.axes[:3]
    assert ppl.get_yscale() == "log" and bpb.get_yscale() == "linear" and acc.get_yscale() == "linear"
    dashed = [line for line in acc.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and set(dashed[0].get_ydata()) == {0.25}
    assert not [line for ax in (ppl, bpb) for line in ax.get_lines() if line.get_linestyle() == "--"]
