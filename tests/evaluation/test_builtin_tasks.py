"""The built-in offline tasks: `stdlib_cloze`, 4-way multiple choice built from the standard library's test
suite (the true next line against 3 word shuffles of it), deterministic for a Python version and seed."""

from __future__ import annotations

import json

import pytest

from pretrain.evaluation.builtin_tasks import (
    BUILTIN_TASKS,
    CLOZE_ITEMS,
    CONTEXT_LINES,
    _test_files,
    stdlib_cloze_items,
    write_cloze_file,
)

N = 200


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return stdlib_cloze_items(seed=0, n=N)


def test_the_builtin_tasks_are_val_bpb_stdlib_cloze_and_position_loss():
    assert BUILTIN_TASKS == ("val_bpb", "stdlib_cloze", "position_loss")


def test_the_items_come_from_the_standard_librarys_test_suite():
    files = _test_files()
    assert files and all(p.parent.name == "test" and p.name.startswith("test_") for p in files)


def test_as_many_items_as_asked_are_made(items):
    assert len(items) == N


def test_items_are_multiple_choice_records_with_four_choices_and_a_gold_index(items):
    for item in items:
        assert set(item) == {"query", "choices", "gold"}
        assert len(item["choices"]) == 4 and 0 <= item["gold"] < 4


def test_the_query_is_the_lines_before_the_answer(items):
    for item in items:
        assert len(item["query"].split("\n")) == CONTEXT_LINES


def test_the_gold_choice_is_the_true_next_line_of_a_test_file(items):
    texts = {}
    for path in _test_files():
        try:
            lines = [ln.rstrip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except (UnicodeDecodeError, OSError):
            continue
        texts[path.name] = "\n".join(lines) + "\n"
    for item in items[:20]:
        passage = item["query"] + "\n" + item["choices"][item["gold"]] + "\n"
        assert any(passage in text for text in texts.values()), passage


def test_the_answer_is_a_real_code_line_of_a_few_words(items):
    for item in items:
        answer = item["choices"][item["gold"]].strip()
        assert 15 <= len(answer) <= 100 and len(answer.split()) >= 4
        assert not answer.startswith(("#", '"""', "'''"))


def test_the_distractors_are_shuffles_of_the_answers_words_with_its_indent(items):
    for item in items:
        answer = item["choices"][item["gold"]]
        indent = answer[: len(answer) - len(answer.lstrip())]
        for choice in item["choices"]:
            assert sorted(choice.split()) == sorted(answer.split())
            assert choice.startswith(indent) and not choice[len(indent) :].startswith((" ", "\t"))


def test_the_four_choices_are_distinct(items):
    for item in items:
        assert len(set(item["choices"])) == 4


def test_the_gold_position_is_not_fixed(items):
    assert {item["gold"] for item in items} == {0, 1, 2, 3}


@pytest.mark.xfail(
    strict=True,
    reason="distractors are the words re-joined with single spaces, so an answer with a run of spaces inside "
    "(e.g. `x = 1  # comment`, aligned columns) is longer than all three: a length tell (~5% of items)",
)
def test_every_choice_of_an_item_has_the_answers_length_so_length_is_no_clue(items):
    assert [item for item in items if len({len(c) for c in item["choices"]}) > 1] == []


def test_the_items_are_the_same_for_a_seed_and_differ_between_seeds(items):
    assert stdlib_cloze_items(seed=0, n=N) == items
    assert stdlib_cloze_items(seed=1, n=N) != items


def test_fewer_items_are_a_prefix_of_more_for_the_same_seed(items):
    assert stdlib_cloze_items(seed=0, n=10) == items[:10]


def test_the_cloze_file_is_the_items_as_json_lines(tmp_path):
    path = tmp_path / "tasks" / "stdlib_cloze.jsonl"
    assert write_cloze_file(path, seed=3) == path
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == CLOZE_ITEMS
    assert [json.loads(line) for line in lines[:5]] == stdlib_cloze_items(seed=3, n=5)
    assert [p.name for p in path.parent.iterdir()] == ["stdlib_cloze.jsonl"]  # no temporary file left


def test_an_existing_cloze_file_is_reused_as_it_is(tmp_path):
    path = tmp_path / "stdlib_cloze.jsonl"
    path.write_text('{"cached": true}\n')
    assert write_cloze_file(path, seed=3) == path
    assert path.read_text() == '{"cached": true}\n'
