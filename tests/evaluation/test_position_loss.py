"""The `position_loss` task: windows cut from the held-out documents, and the mean loss of each position bucket
equal to a per-token cross-entropy computed by hand."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pretrain.core.errors import PretrainError
from pretrain.evaluation.position_loss import (
    PositionLoss,
    bucket_names,
    default_bounds,
    held_out_windows,
    lm_eval_tasks,
    position_loss_table,
)


class _Tokenizer:
    """Characters as token ids (a..z -> 1..26), EOS 0."""

    eos_token_id = 0

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) - 96 for c in text] for text in texts]}


def _run_dir(tmp_path, texts):
    (tmp_path / "tokens").mkdir()
    lines = [json.dumps({"id": str(i), "source": "s", "text": t}) for i, t in enumerate(texts)]
    (tmp_path / "tokens" / "val_docs.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_windows_are_cut_inside_documents_longer_than_the_length(tmp_path):
    run = _run_dir(tmp_path, ["abc", "abcdefghij", "abcdefghijklmnopq"])  # 3, 10 and 17 ids (+ EOS)
    windows = held_out_windows(run, _Tokenizer(), length=4)
    # 11 ids: windows at 0 and 4 (5 tokens each); 18 ids: at 0, 4, 8, 12; the 4-id document is too short
    assert windows.tolist() == [
        [1, 2, 3, 4, 5],
        [5, 6, 7, 8, 9],
        [1, 2, 3, 4, 5],
        [5, 6, 7, 8, 9],
        [9, 10, 11, 12, 13],
        [13, 14, 15, 16, 17],
    ]


def test_bucket_losses_are_the_mean_cross_entropy_of_their_positions():
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama", hidden_size=32, num_attention_heads=2, num_hidden_layers=1, vocab_size=30
    )
    model = AutoModelForCausalLM.from_config(config)
    windows = torch.randint(0, 30, (5, 17), generator=torch.Generator().manual_seed(1))
    got = PositionLoss(windows, [4, 8, 16], batch_size=2)(model)
    with torch.no_grad():
        logits = model(input_ids=windows[:, :-1]).logits
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")
    assert list(got) == [f"eval/position_loss/{n}" for n in ("loss@1-4", "loss@5-8", "loss@9-16")]
    for (key, value), (lo, hi) in zip(got.items(), [(0, 4), (4, 8), (8, 16)]):
        assert value == pytest.approx(float(ce[:, lo:hi].mean()), rel=1e-5), key


def test_default_buckets_double_up_to_the_longest_stage():
    assert default_bounds(256, 1024) == [256, 512, 1024]
    assert default_bounds(256, 768) == [256, 512, 768]
    assert default_bounds(256, 256) == [64, 128, 256]
    assert bucket_names([256, 512, 1024]) == ["loss@1-256", "loss@257-512", "loss@513-1024"]
    assert lm_eval_tasks(["val_bpb", "position_loss", "hellaswag"]) == ["val_bpb", "hellaswag"]


def test_no_long_enough_document_is_one_clear_error(tmp_path):
    windows = held_out_windows(_run_dir(tmp_path, ["abc"]), _Tokenizer(), length=64)
    with pytest.raises(PretrainError, match=r"position_loss: no held-out document is longer than 64 tokens"):
        PositionLoss(windows, [32, 64])


def test_the_cards_table_orders_the_final_buckets_by_position():
    final = {"eval/position_loss/loss@257-512": 3.0, "eval/position_loss/loss@1-256": 2.5, "val/loss": 1.0}
    table = position_loss_table({"final": {**final, "eval/position_loss/loss@513-1024": None}})
    assert table == {
        "buckets": [{"positions": "1-256", "loss": 2.5}, {"positions": "257-512", "loss": 3.0}],
        "longest": 512,
    }
    assert position_loss_table({"final": {"val/loss": 1.0}}) is None
