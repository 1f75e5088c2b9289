"""A mixture-of-experts step: the router's losses in the objective, and the load of every expert.

    router = RouterStats(spec)                      # spec: scaling.moe.moe_spec(model.config)
    forward_backward(..., router=router)            # each micro batch: objective += aux_coef * aux (+ z_coef * z)
    router.finish(accelerator)                      # means / sums over micro batches and ranks
    router.aux_loss, router.weighted, router.shares()   # logged: aux_loss, objective, expert shares per layer

The load-balancing loss is Switch Transformer's num_experts * sum_e f_e * P_e (f_e: the share of token slots
routed to expert e, summing to top_k; P_e: its mean router probability; top_k when perfectly balanced), taken in
EACH layer and averaged over the layers, weighted by the config's `router_aux_loss_coef`; the training loop passes
no labels, so without it the router trains on cross-entropy alone. Transformers' own `aux_loss` concatenates every
layer's router logits before counting, so it balances the experts' load summed over layers: tiny-moe trained with
it to a near-perfect 2.007 (top-2) while one layer sent 0.39 of its slots to one expert (balanced: 0.125). The
router z-loss (ST-MoE: the mean squared logsumexp of the router logits) is added with `router_z_loss_coef` when
the config has one. An expert's share is the fraction of the layer's routed token slots (tokens x top_k) sent to
it: 1/num_experts each when balanced.
"""

from __future__ import annotations

import torch

from pretrain.scaling.moe import MoESpec


class RouterStats:
    """Collects the router outputs of one optimizer step's micro batches (see the module docstring)."""

    def __init__(self, spec: MoESpec):
        self.spec = spec
        self.aux_total = torch.zeros(())
        self.term_total = torch.zeros(())  # the weighted router losses, as the objective has them
        self.counts: torch.Tensor | None = None  # [layers, experts] routed token slots
        self.micro_batches = 0
        self.aux_loss: float | None = None
        self.weighted: float | None = None  # mean weighted router losses (the objective's share)
        self.pending: torch.Tensor | None = (
            None  # the last forward's weighted router losses (for its objective)
        )

    def objective_term(self, output) -> torch.Tensor:
        """The router losses of one forward's output, weighted for the objective; records the expert load."""
        logits = tuple(output.router_logits or ())
        routes = [self.route(layer) for layer in logits]  # one top-k per layer serves the loss and the load
        if routes:
            aux = torch.stack([self.balance_loss(probs, counts) for probs, counts in routes]).mean()
        else:
            aux = torch.zeros((), device=output.logits.device)
        term = self.spec.aux_coef * aux
        if self.spec.z_coef and logits:
            z = torch.stack([torch.logsumexp(layer.float(), dim=-1).pow(2).mean() for layer in logits]).mean()
            term = term + self.spec.z_coef * z
        with torch.no_grad():
            self.aux_total = self.aux_total.to(aux.device) + aux.detach().float()
            self.term_total = self.term_total.to(aux.device) + term.detach().float()
            self.micro_batches += 1
            if routes:
                counts = torch.stack([counts for _, counts in routes])
                self.counts = counts if self.counts is None else self.counts + counts
        return term

    def route(self, layer_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's router probabilities [tokens, experts] and the token slots routed to each expert (its
        top-k, as the model routes)."""
        probs = torch.softmax(layer_logits.float(), dim=-1)
        chosen = torch.topk(probs, self.spec.top_k, dim=-1).indices
        return probs, torch.bincount(chosen.flatten(), minlength=self.spec.num_experts)

    def balance_loss(self, probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """One layer's load-balancing loss (gradient through P_e, the mean probabilities)."""
        routed = counts.float() / probs.shape[0]  # f_e: slots per token routed to expert e
        return self.spec.num_experts * (routed * probs.mean(dim=0)).sum()

    def layer_balance_loss(self, layer_logits: torch.Tensor) -> torch.Tensor:
        """One layer's load-balancing loss from its router logits [tokens, experts]."""
        return self.balance_loss(*self.route(layer_logits))

    def finish(self, accelerator) -> None:
        """Mean aux loss over micro batches and ranks; expert counts summed over ranks."""
        n = max(self.micro_batches, 1)
        means = accelerator.reduce(torch.stack([self.aux_total, self.term_total]) / n, reduction="mean")
        self.aux_loss, self.weighted = float(means[0]), float(means[1])
        if self.counts is not None:
            self.counts = accelerator.reduce(self.counts.float(), reduction="sum")

    def shares(self) -> tuple[list[float], list[float]] | None:
        """(min, max) share of the routed token slots per MoE layer, or None when nothing was routed."""
        if self.counts is None:
            return None
        share = self.counts / self.counts.sum(dim=1, keepdim=True).clamp(min=1)
        return [round(float(x), 4) for x in share.min(dim=1).values], [
            round(float(x), 4) for x in share.max(dim=1).values
        ]
