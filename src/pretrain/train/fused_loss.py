"""Chunked fused linear cross-entropy: the LM head and the loss in one pass over chunks of tokens.

The plain path materialises the logits of every token (tokens x vocab, fp32: 201 MB for 1,024 tokens of a
49,152 vocabulary), then streams them through log-softmax, the loss, its backward and the logits' gradient.
Here the head's matmul, the logsumexp, the loss and the gradients w.r.t. the hidden states and the head's
weight are computed chunk by chunk in the forward, in one logits buffer every chunk reuses (a fresh 25-200 MB
tensor costs as much in page faults as the matmul that fills it); the full logits never exist, and what is
left is the head's three matmuls, which run near the CPU's peak. The backward only scales the stored gradients
by the incoming one. The idea is Liger's
fused linear cross-entropy (and the chunked losses of torchtune / OLMo-core), written here in plain torch.

The training forward still goes through the (possibly DDP-wrapped) model's `__call__`: `FusedHead` makes the
Hugging Face model's output embedding return its input while the flag is set (`bypassed()`), and the loss
is applied to those hidden states with the head's weight. Outside `bypassed()` the head is the plain
`nn.Linear` (evaluation, generation), and the saved model is the unchanged Hugging Face model: the state
dict and the class are untouched (the override is an instance attribute, never saved).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch

IGNORE_INDEX = -100  # labels the loss skips (torch's and Hugging Face's convention)
# Chunk size, measured on 2 Zen 4 cores (the head + loss forward and backward, hidden 128): at a 4,096 vocab
# 256-1,024 tokens per chunk are equally fast (8 MB of fp32 logits at 512); at 49,152, 256 tokens beat 128 by
# 7% and 512 by 5% (50 MB of logits, still a quarter of the full 201 MB): the matmuls want >= 256 rows, and
# fewer chunks mean fewer passes over the head's weight.
CHUNK_LOGITS_BYTES = 8 * 2**20
MIN_CHUNK_TOKENS = 256


def chunk_tokens_for(vocab_size: int, budget_bytes: int = CHUNK_LOGITS_BYTES) -> int:
    """Tokens per chunk: as many as fit `budget_bytes` of fp32 logits, and at least MIN_CHUNK_TOKENS."""
    return max(MIN_CHUNK_TOKENS, budget_bytes // (4 * vocab_size))


def _compute_dtype(device_type: str, weight: torch.Tensor) -> torch.dtype:
    """The matmuls' dtype: autocast's (bf16-mixed) when it is on, else the weight's (fp32, or bf16-true)."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """(objective, cross-entropy, z-loss) of `hidden @ weight.T` against `labels`; gradients computed in forward.

    objective = mean over non-ignored tokens of (ce_i + z_coef * lse_i^2), lse_i = logsumexp of token i's
    logits. Only the objective is differentiable; ce and z (the same means, detached) are for logging.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, z_coef, chunk_tokens, compute_dtype):
        n = hidden.size(0)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        device, vocab = hidden.device, weight.size(0)
        valid = labels != IGNORE_INDEX
        # 1/count of the tokens that count (no division by zero when every label is ignored: all weights 0)
        token_w = valid.to(torch.float32) / valid.sum().clamp(min=1)
        targets = torch.where(valid, labels, 0)
        low = compute_dtype != torch.float32
        w = weight.to(compute_dtype)
        # buffers reused by every chunk: a fresh tensor of this size per chunk costs page faults (the CPU
        # allocator does not cache), as much as the matmul that fills it
        rows = min(chunk_tokens, n)
        logits_buf = torch.empty(rows, vocab, dtype=torch.float32, device=device)
        low_buf = torch.empty(rows, vocab, dtype=compute_dtype, device=device) if low else None
        grad_h = torch.empty_like(hidden) if want_h else None
        # fp32 accumulator: the chunks' weight gradients are summed at full precision whatever the matmul dtype
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=device) if want_w else None
        grad_w_low = torch.empty(weight.shape, dtype=compute_dtype, device=device) if want_w and low else None
        ce_sum = torch.zeros((), dtype=torch.float32, device=device)
        z_sum = torch.zeros((), dtype=torch.float32, device=device)
        for start in range(0, n, chunk_tokens):
            end = min(start + chunk_tokens, n)
            h = hidden[start:end].to(compute_dtype)
            logits = logits_buf[: end - start]  # (chunk, vocab): the only logits alive at any time
            if low:
                logits.copy_(torch.mm(h, w.t(), out=low_buf[: end - start]))
            else:
                torch.mm(h, w.t(), out=logits)
            tgt = targets[start:end]
            target_logit = logits.gather(1, tgt[:, None]).squeeze(1)
            peak = logits.amax(dim=1, keepdim=True)
            probs = logits.sub_(peak).exp_()  # in place: the logits are not needed any more
            denom = probs.sum(dim=1)
            lse = denom.log() + peak.squeeze(1)
            tw = token_w[start:end]
            ce_sum += ((lse - target_logit) * tw).sum()
            z_sum += (lse.square() * tw).sum()
            if not (want_h or want_w):
                continue
            # d/dlogits of tw * (ce + z_coef * lse^2) = tw * (softmax * (1 + 2 z_coef lse) - onehot)
            probs.mul_((tw * (1 + 2 * z_coef * lse) / denom)[:, None])
            probs[torch.arange(end - start, device=device), tgt] -= tw
            grad_logits = low_buf[: end - start].copy_(probs) if low else probs
            if want_h:
                if low:
                    grad_h[start:end] = grad_logits @ w
                else:
                    torch.mm(grad_logits, w, out=grad_h[start:end])
            if want_w:
                if low:
                    grad_w += torch.mm(grad_logits.t(), h, out=grad_w_low)
                else:
                    grad_w.addmm_(grad_logits.t(), h)
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype) if want_w else None)
        ce, z = ce_sum, z_sum
        objective = ce + z_coef * z if z_coef else ce.clone()
        ctx.mark_non_differentiable(ce, z)
        return objective, ce, z

    @staticmethod
    def backward(ctx, grad_objective, _grad_ce, _grad_z):
        grad_h, grad_w = ctx.saved_tensors
        # the objective is a scalar: its gradient (1/accum, a loss scale, a fault) scales the stored ones
        if grad_h is not None:
            grad_h = grad_h * grad_objective.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = grad_w * grad_objective.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    z_coef: float = 0.0,
    chunk_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, mean cross-entropy, mean z-loss) of the logits `hidden @ weight.T`, never materialised whole.

    hidden: (..., H) final hidden states; weight: (V, H) LM head; labels: (...) next-token ids, -100 ignored.
    The objective (ce + z_coef * z) is differentiable w.r.t. hidden and weight; ce and z are detached. Under
    autocast the matmuls run in autocast's dtype and the softmax in fp32, as the plain path does.
    """
    hidden = hidden.reshape(-1, hidden.size(-1))
    labels = labels.reshape(-1)
    if hidden.size(0) != labels.size(0):
        raise ValueError(f"{hidden.size(0)} hidden states but {labels.size(0)} labels")
    chunk = chunk_tokens or chunk_tokens_for(weight.size(0))
    dtype = _compute_dtype(hidden.device.type, weight)
    if not torch.is_grad_enabled():
        # validation under no_grad: a custom Function still sees the head's weight as needing a gradient
        # (`needs_input_grad` follows requires_grad, not the grad mode), and would compute it for nothing
        hidden, weight = hidden.detach(), weight.detach()
    with torch.autocast(hidden.device.type, enabled=False):
        return _FusedLinearCrossEntropy.apply(hidden, weight, labels, float(z_coef), chunk, dtype)


def _head_forward(head: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The output embedding's forward while a FusedHead is installed: its input while bypassed, else the linear."""
    if head._pretrain_bypass:
        return x
    return torch.nn.Linear.forward(head, x)


class FusedHead:
    """The fused loss wired into a Hugging Face causal LM (see the module docstring).

    `install` checks that the model's logits are exactly `lm_head(final hidden states)` (no bias, no
    soft-capping or scaling after the head, as Gemma 2 or Granite apply) by comparing both on a few tokens;
    a model that fails gets the plain loss, with the reason.
    """

    def __init__(self, head: torch.nn.Linear, chunk_tokens: int):
        self.head, self.chunk_tokens = head, chunk_tokens

    @classmethod
    def install(cls, model: torch.nn.Module, chunk_tokens: int | None = None) -> FusedHead:
        """Override `model`'s output embedding so it can pass hidden states through; raises ValueError when
        the model's logits are not a plain linear head of them. Call before wrapping (DDP, compile)."""
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if type(head) is not torch.nn.Linear:
            raise ValueError(f"the output embedding is {type(head).__name__}, not a plain nn.Linear")
        if head.bias is not None:
            raise ValueError("the LM head has a bias")
        head._pretrain_bypass = False
        head.forward = types.MethodType(_head_forward, head)
        fused = cls(head, chunk_tokens or chunk_tokens_for(head.out_features))
        problem = fused._logits_problem(model)
        if problem:
            fused.uninstall()
            raise ValueError(problem)
        return fused

    def uninstall(self) -> None:
        """Give the head back its class's forward."""
        del self.head.forward, self.head._pretrain_bypass

    @property
    def weight(self) -> torch.nn.Parameter:
        return self.head.weight

    @contextlib.contextmanager
    def bypassed(self) -> Iterator[None]:
        """Within: the model's `logits` output holds the final hidden states instead."""
        self.head._pretrain_bypass = True
        try:
            yield
        finally:
            self.head._pretrain_bypass = False

    def losses(
        self, hidden: torch.Tensor, labels: torch.Tensor, z_coef: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective, cross-entropy, z-loss) of the hidden states a bypassed forward returned."""
        return fused_linear_cross_entropy(hidden, self.head.weight, labels, z_coef, self.chunk_tokens)

    def _logits_problem(self, model: torch.nn.Module) -> str | None:
        """Why the model's logits are not its head's output on the hidden states the bypass returns (None
        when they are), checked on 8 tokens."""
        # soft-capping (Gemma 2) may round to the identity on an untrained model's small logits: ask the config
        if getattr(getattr(model, "config", None), "final_logit_softcapping", None):
            return "the model soft-caps its logits (final_logit_softcapping)"
        device = self.head.weight.device
        ids = torch.arange(8, device=device)[None] % self.head.out_features
        seen: dict[str, torch.Tensor] = {}

        def record(_module, args, output):
            if not self.head._pretrain_bypass:
                seen["input"], seen["output"] = args[0], output

        was_training = model.training
        model.eval()  # no dropout: both forwards see the same network, and no RNG is drawn
        hook = self.head.register_forward_hook(record)
        try:
            with torch.no_grad():
                logits = model(input_ids=ids, use_cache=False).logits
                with self.bypassed():
                    hidden = model(input_ids=ids, use_cache=False).logits
        finally:
            hook.remove()
            model.train(was_training)
        # anything done to the head's output (scaling as Granite's, soft-capping) shows in one or the other
        if "output" not in seen or not (
            torch.equal(logits, seen["output"]) and torch.equal(hidden, seen["input"])
        ):
            return "the model transforms the LM head's output (e.g. scales the logits)"
        return None
