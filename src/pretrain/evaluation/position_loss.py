"""The built-in `position_loss` task: held-out loss by position bucket on long documents, the figure a
context-extension stage is judged by (positions 513-1,024 should improve, 1-256 should not get worse).

    windows = held_out_windows(run_dir, tokenizer, length=1024)            # [n, 1025] token windows
    metrics = PositionLoss(windows, bounds=[256, 512, 1024])(model)        # {"eval/position_loss/loss@1-256": ...}

The documents are the run's held-out val split (`tokens/val_docs.jsonl`, never trained on), tokenized with the
run's tokenizer; every document of more than `length` tokens is cut into non-overlapping windows of `length`+1
tokens from its start, so a window lies inside one document and position p has p tokens of that document as
context. The loss of each position is the next-token cross-entropy in nats; a bucket's is the mean over its
positions of every window. `pretrain eval` and in-loop evaluation call it beside lm-eval (it is not an lm-eval
task: lm-eval's rolling log-likelihood does not keep per-position losses).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pretrain.config.context_checks import longest_seq_len
from pretrain.core.errors import PretrainError
from pretrain.core.layout import RunLayout

POSITION_LOSS = "position_loss"
MAX_WINDOWS = 512  # enough for a stable bucket mean; caps the cost on a big val split


def lm_eval_tasks(tasks: list[str]) -> list[str]:
    """The tasks lm-eval runs (all but `position_loss`)."""
    return [t for t in tasks if t != POSITION_LOSS]


def default_bounds(seq_len: int, longest: int) -> list[int]:
    """Bucket upper ends: train.seq_len doubled up to the longest stage's (256, 512, 1024 for tiny-long); without
    a longer stage, the quarters of the context (64, 128, 256)."""
    if longest <= seq_len:
        return [max(1, seq_len // 4), max(1, seq_len // 2), seq_len]
    bounds = [seq_len]
    while bounds[-1] * 2 < longest:
        bounds.append(bounds[-1] * 2)
    return [*bounds, longest]


def bucket_names(bounds: list[int]) -> list[str]:
    return [f"loss@{lo + 1}-{hi}" for lo, hi in zip([0, *bounds[:-1]], bounds)]


def held_out_windows(run_dir: Path, tokenizer, length: int, max_windows: int = MAX_WINDOWS) -> torch.Tensor:
    """Windows of `length`+1 tokens cut from the held-out documents longer than `length` tokens."""
    path = RunLayout(run_dir).tokens / "val_docs.jsonl"
    if not path.exists():
        raise PretrainError(
            f"{path}: missing; {POSITION_LOSS} needs the run's packed val split (`pretrain pack`)"
        )
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    windows = []
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        ids = [*ids, tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids
        windows += [ids[s : s + length + 1] for s in range(0, len(ids) - length, length)]
    return torch.tensor(windows[:max_windows], dtype=torch.long).reshape(-1, length + 1)


def recipe_bounds(recipe) -> list[int]:
    """`eval.position_buckets`, or the default for the recipe's lengths (`default_bounds`)."""
    return list(recipe.eval.position_buckets or default_bounds(recipe.train.seq_len, longest_seq_len(recipe)))


class PositionLoss:
    """Held-out loss per position bucket of a model (see the module docstring)."""

    def __init__(self, windows: torch.Tensor, bounds: list[int], batch_size: int = 4):
        if not len(windows):
            raise PretrainError(
                f"{POSITION_LOSS}: no held-out document is longer than {bounds[-1]} tokens; raise "
                "data.val_fraction or evaluate shorter positions (eval.position_buckets)"
            )
        self.windows, self.bounds, self.batch_size = windows, list(bounds), batch_size

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device | str | None = None) -> dict[str, float]:
        """{"eval/position_loss/loss@a-b": mean nats/token, ...} for `model` (left in eval mode)."""
        model.eval()
        device = device or next(model.parameters()).device
        length = self.bounds[-1]
        total = torch.zeros(length, dtype=torch.float64)
        for start in range(0, len(self.windows), self.batch_size):
            rows = self.windows[start : start + self.batch_size, : length + 1].to(device)
            logits = model(input_ids=rows[:, :-1], use_cache=False).logits.float()
            losses = F.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none")
            total += losses.sum(0).double().cpu()
        per_position = total / len(self.windows)
        out = {}
        for name, lo, hi in zip(bucket_names(self.bounds), [0, *self.bounds[:-1]], self.bounds):
            out[f"eval/{POSITION_LOSS}/{name}"] = float(per_position[lo:hi].mean())
        return out


def position_loss_table(summary: dict) -> dict | None:
    """The final evaluation's `position_loss` buckets: [{"positions": "1-256", "loss": x}], longest position."""
    prefix = f"eval/{POSITION_LOSS}/loss@"
    final = {k: v for k, v in (summary.get("final") or {}).items() if k.startswith(prefix) and v is not None}
    if not final:
        return None
    buckets = sorted(
        ({"positions": k.removeprefix(prefix), "loss": v} for k, v in final.items()),
        key=lambda b: int(b["positions"].split("-")[0]),
    )
    return {"buckets": buckets, "longest": int(buckets[-1]["positions"].split("-")[1])}
