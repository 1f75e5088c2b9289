"""Tokenizer extension (`tokenizer.extend`) for continued pretraining from a local parent folder.

The extended tokenizer keeps the parent's ids, merges and special tokens, appends tokens learnt on the mix (and
the listed ones), loads with plain `AutoTokenizer`, and encodes the held-out mix in fewer tokens; its encoding
is the parent's with runs of parent tokens joined. The parent model's embeddings grow by the new tokens, each
row the mean of the parent's rows for the parent's encoding of the token, the parent's rows and logits
untouched. A listed token the parent already has is an error naming the key, before any work.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from pretrain.commands.card import write_model_card
from pretrain.commands.run import run_all, run_stage
from pretrain.core.errors import RecipeError
from pretrain.modeling import build_model
from pretrain.modeling.parent import load_parent
from pretrain.testing import run_train_stage
from pretrain.tokens.extension import EXTENSION_FILE, TokenizerExtensionRecord, new_token_collisions
from pretrain.tokens.tokenizer import load_tokenizer
from pretrain.train.metrics import step_losses

LEARNT = 48
LISTED = ["<|tool_call|>", "pretraining handbook"]  # neither occurs in the mix (stdlib code and docs)
EXTEND = f"tokenizer.extend={{new_tokens: {LEARNT}, tokens: {json.dumps(LISTED)}, sample_bytes: 1000000}}"


@pytest.fixture(scope="module")
def parent_dir(make_run, tmp_path_factory):
    """A parent model folder (config, safetensors, tokenizer) trained for 16 steps."""
    out = tmp_path_factory.mktemp("ext_parent") / "run"
    recipe = make_run(out, "eval.enabled=false", "train.tokens=8192", "train.checkpoint.every_steps=16")
    return run_train_stage(recipe, resume="never")


@pytest.fixture(scope="module")
def child(make_run, parent_dir, tmp_path_factory):
    """A continued-pretraining run from `parent_dir` with the extension: tokenizer and pack stages built."""
    out = tmp_path_factory.mktemp("ext_child") / "run"
    recipe = make_run(
        out,
        f"model.init_from={parent_dir}",
        EXTEND,
        "eval.enabled=false",
        "train.tokens=2048",
        "train.log_every=1",
    )
    for stage in ("tokenizer", "pack"):
        run_stage(recipe, stage)
    return recipe


def _mix_lines(recipe) -> list[str]:
    """Non-blank lines of the first documents of the mix."""
    from pretrain.data.mixio import iter_documents

    lines = []
    for _, rec in zip(range(400), iter_documents(recipe.layout.mix)):
        lines += [line for line in rec["text"].splitlines() if line.strip()]
    return lines[:3000]


def _expand(ids: list[int], tree: dict[int, tuple[int, int]]) -> list[int]:
    """Undo the appended merges: every new id back to the parent ids it joined."""
    out: list[int] = []
    for i in ids:
        out += _expand(list(tree[i]), tree) if i in tree else [i]
    return out


def test_parent_ids_unchanged_new_tokens_appended(child, parent_dir):
    parent = AutoTokenizer.from_pretrained(parent_dir)
    extended = AutoTokenizer.from_pretrained(child.layout.tokenizer)  # plain transformers, no project code
    base = len(parent)
    assert len(extended) == base + LEARNT + len(LISTED) == 562
    vocab = extended.get_vocab()
    assert all(vocab[token] == i for token, i in parent.get_vocab().items())  # the parent's ids, unchanged
    assert extended.all_special_tokens == parent.all_special_tokens
    assert extended("x")["input_ids"][0] == parent.bos_token_id  # the parent's BOS post-processor kept
    record = TokenizerExtensionRecord.read(child.layout.tokenizer)
    assert [t.id for t in record.tokens] == list(range(base, base + LEARNT + len(LISTED)))
    assert (record.count("learnt"), record.count("listed")) == (LEARNT, len(LISTED))
    for i, token in enumerate(LISTED):
        assert extended(token, add_special_tokens=False)["input_ids"] == [base + LEARNT + i]
    assert not new_token_collisions(set(parent.get_vocab()), [t.token for t in record.tokens])


def test_extended_encoding_is_the_parents_with_tokens_joined(child, parent_dir):
    parent = AutoTokenizer.from_pretrained(parent_dir)
    extended = AutoTokenizer.from_pretrained(child.layout.tokenizer)
    base = len(parent)
    merges = json.loads((child.layout.tokenizer / "tokenizer.json").read_text())["model"]["merges"]
    vocab = extended.get_vocab()
    tree = {vocab[a + b]: (vocab[a], vocab[b]) for a, b in merges[-LEARNT:]}
    assert sorted(tree) == list(range(base, base + LEARNT))
    untouched = joined = 0
    for line in _mix_lines(child):
        ids = extended(line, add_special_tokens=False)["input_ids"]
        parent_ids = parent(line, add_special_tokens=False)["input_ids"]
        assert extended.decode(ids) == line
        assert _expand(ids, tree) == parent_ids, line
        if max(ids) < base:
            untouched += 1
        else:
            joined += 1
            assert len(ids) < len(parent_ids)
    assert untouched > 100 and joined > 100


def test_extended_tokenizer_compresses_the_mix_better(child):
    report = json.loads((child.layout.tokenizer / "tokenizer_report.json").read_text())
    print(
        f"\nheld-out bytes/token: parent {report['parent_bytes_per_token']}, extended "
        f"{report['overall_bytes_per_token']} (+{LEARNT} learnt, +{len(LISTED)} listed)"
    )
    assert report["extension"] == {
        "parent": str(child.model.init_from),
        "parent_vocab_size": 512,
        "added_tokens": LEARNT + len(LISTED),
        "learnt": LEARNT,
        "listed": len(LISTED),
    }
    assert set(report["sources"]) == {"stdlib_code", "stdlib_docs", "pydoc_topics"}
    for name, source in report["sources"].items():
        assert source["bytes_per_token"] > source["parent_bytes_per_token"], name
        assert source["roundtrip_failures"] == 0
    assert report["overall_bytes_per_token"] > 1.03 * report["parent_bytes_per_token"]


def _parent_sub_ids(parent, extended, token_id: int) -> list[int] | None:
    """The parent tokenizer's encoding of a new token's text (None for a piece of a UTF-8 character)."""
    text = extended.decode([token_id])
    return None if "\ufffd" in text else parent(text, add_special_tokens=False)["input_ids"]


def _check_rows(model, parent_model, parent, extended) -> None:
    base = len(parent)
    size = len(extended)
    assert model.config.vocab_size == size
    rows, parent_rows = model.get_input_embeddings().weight, parent_model.get_input_embeddings().weight
    assert rows.shape[0] == size and torch.equal(rows[:base], parent_rows)
    heads = [(rows, parent_rows)]
    if not model.config.tie_word_embeddings:
        head, parent_head = model.get_output_embeddings().weight, parent_model.get_output_embeddings().weight
        assert head.shape[0] == size and torch.equal(head[:base], parent_head)
        assert not torch.equal(head[base:], rows[base:])  # the head's own rows, not the embedding's
        heads.append((head, parent_head))
    checked = 0
    for token_id in range(base, size):
        sub = _parent_sub_ids(parent, extended, token_id)
        if sub is None:
            continue
        checked += 1
        for new, old in heads:
            assert torch.equal(new[token_id], old[sub].mean(dim=0)), (token_id, extended.decode([token_id]))
    assert checked >= size - base - 5


def test_new_rows_are_the_mean_of_their_parent_sub_token_rows(child, parent_dir):
    parent, extended = AutoTokenizer.from_pretrained(parent_dir), load_tokenizer(child.layout.tokenizer)
    model = load_parent(child, extended).model
    _check_rows(model, AutoModelForCausalLM.from_pretrained(parent_dir), parent, extended)


def test_untied_head_rows_too(child, parent_dir, make_run, tmp_path):
    """A parent with an untied output head (random init, saved in the test): both matrices grow."""
    untied = make_run(tmp_path / "untied", "model.tie_word_embeddings=false")
    folder = tmp_path / "untied_parent"
    parent = load_tokenizer(parent_dir)
    build_model(untied, parent).save_pretrained(folder)
    parent.save_pretrained(folder)
    run = make_run(tmp_path / "run", f"model.init_from={folder}", "model.tie_word_embeddings=false", EXTEND)
    shutil.rmtree(run.layout.tokenizer)
    shutil.copytree(child.layout.tokenizer, run.layout.tokenizer)  # the same extension of the same tokenizer
    extended = load_tokenizer(run.layout.tokenizer)
    _check_rows(
        load_parent(run, extended).model, AutoModelForCausalLM.from_pretrained(folder), parent, extended
    )


def test_loss_on_text_without_new_tokens(child, parent_dir):
    """On a batch the parent encodes (no new ids), the extended model's logits over the parent's ids are the
    parent's, and each new token's logit is the mean of its sub-tokens' logits (mean rows of a linear tied
    head): its loss is the parent's plus exactly that softmax share, predicted from the parent alone."""
    parent, extended = AutoTokenizer.from_pretrained(parent_dir), load_tokenizer(child.layout.tokenizer)
    parent_model = AutoModelForCausalLM.from_pretrained(parent_dir).eval()
    model = load_parent(child, extended).model.eval()
    text = " ".join(_mix_lines(child)[:60])
    ids = torch.tensor([parent(text)["input_ids"][:64]])
    with torch.no_grad():
        old, new = parent_model(ids).logits[0, :-1], model(ids).logits[0, :-1]
    base, labels = len(parent), ids[0, 1:]
    torch.testing.assert_close(new[:, :base], old, rtol=0, atol=1e-5)
    tokens = TokenizerExtensionRecord.read(child.layout.tokenizer).tokens
    predicted_new = torch.stack([old[:, list(t.parent_ids)].mean(dim=-1) for t in tokens], dim=-1)
    torch.testing.assert_close(new[:, base:], predicted_new, rtol=0, atol=1e-5)
    loss_parent = F.cross_entropy(old, labels).item()
    loss_new = F.cross_entropy(new, labels).item()
    predicted = F.cross_entropy(torch.cat([old, predicted_new], dim=-1), labels).item()
    print(
        f"\nloss on parent-encoded text: parent {loss_parent:.5f}, extended {loss_new:.5f} (predicted {predicted:.5f})"
    )
    assert loss_new == pytest.approx(predicted, rel=1e-5) and loss_new > loss_parent


def test_training_starts_from_the_parent_and_the_card_names_it(child, parent_dir):
    run_train_stage(child, resume="never")
    first = step_losses(child.out / "metrics.jsonl")[0][1]
    scratch = child.model_copy(update={"model": child.model.model_copy(update={"init_from": None})})
    extended = load_tokenizer(child.layout.tokenizer)
    random_init = math.log(len(extended))
    print(
        f"\nfirst loss with the extended tokenizer {first:.4f}; a random init starts near {random_init:.4f}"
    )
    assert first < random_init - 0.5
    assert build_model(scratch, extended).config.vocab_size == len(extended)
    final = child.layout.final
    assert AutoTokenizer.from_pretrained(final).get_vocab() == extended.get_vocab()
    assert AutoModelForCausalLM.from_pretrained(final).config.vocab_size == len(extended)
    card = write_model_card(child, final).read_text()
    assert f"continued from {parent_dir}" in card
    line = next(li for li in card.splitlines() if li.startswith("Its tokenizer was extended"))
    assert (
        f"extended with {LEARNT + len(LISTED)} tokens ({LEARNT} learnt on this model's data mix, 2 listed"
        in line
    )
    assert "after the parent's 512 ids" in line


def _a_word_token(parent_dir) -> str:
    """The text of a word the parent tokenizer has as one token (e.g. ' return')."""
    parent = AutoTokenizer.from_pretrained(parent_dir)
    return next(
        text for i in range(len(parent)) if len(text := parent.decode([i])) >= 4 and text.strip().isalpha()
    )


@pytest.mark.parametrize("listed", [["<|bos|>"], ["WORD"], ["zzzq", "zzzq"]])
def test_a_listed_token_the_parent_has_is_an_error_before_work(listed, parent_dir, make_run, tmp_path):
    listed = [_a_word_token(parent_dir) if t == "WORD" else t for t in listed]
    extend = f"tokenizer.extend={{new_tokens: 8, tokens: {json.dumps(listed)}}}"
    if len(set(listed)) < len(listed):  # duplicates: the schema refuses them
        with pytest.raises(RecipeError, match=r"tokenizer.extend: tokens.1: 'zzzq' is listed twice"):
            make_run(tmp_path / "run", f"model.init_from={parent_dir}", extend)
        return
    recipe = make_run(tmp_path / "run", f"model.init_from={parent_dir}", extend, "eval.enabled=false")
    marker = recipe.layout.tokenizer / "STAGE.json"
    before = marker.read_text()
    pattern = rf"tokenizer.extend.tokens.0: '{listed[0]}' collides with token \d+ of the parent tokenizer"
    with pytest.raises(RecipeError, match=pattern):
        run_all(recipe)
    assert marker.read_text() == before and not (recipe.layout.tokenizer / EXTENSION_FILE).exists()
    with pytest.raises(RecipeError, match=pattern):
        run_stage(recipe, "tokenizer")


def test_learnt_collisions_are_named():
    assert new_token_collisions({"Ġthe", "ab"}, ["abc", "Ġthe", "abc", "x"]) == ["Ġthe", "abc"]


def test_extension_needs_a_reused_tokenizer(make_run, tmp_path):
    with pytest.raises(RecipeError, match="tokenizer.extend: extends a reused tokenizer, but none is set"):
        make_run(tmp_path / "run", "tokenizer.extend={new_tokens: 8}")
