"""The optimizer: AdamW, or Muon for the hidden matrices with AdamW for everything else.

AdamW decays only matrices that are not norms, biases or embeddings (configurable): decaying norm gains
and biases pulls them towards zero for no benefit; embeddings are excluded by default as in most LLM
recipes (OLMo, SmolLM). Fused AdamW is used on CUDA (one kernel for all parameters), foreach elsewhere.

`name: muon` trains the 2-D hidden matrices (attention and MLP projections) with Muon (momentum, then an
update orthogonalised by Newton-Schulz iterations, Keller Jordan's recipe as used by modded-nanogpt and
nanochat): `DistributedMuon` (train/muon.py), torch.optim.Muon's arithmetic with same-shape matrices stacked,
which under FSDP2 orthogonalises each sharded matrix whole on one owner rank) and the rest with AdamW: the input embedding and the LM head (Muon is not
meant for them: their rows are looked up one token at a time), norm gains and biases. The two run as one
`MuonAdamW` optimizer, so the loop, the lr schedule, accelerate and the checkpoints see one object.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pretrain.config.optimizer import OptimizerConfig
from pretrain.core.errors import StageError
from pretrain.modeling import embedding_parameter_ids, muon_parameters
from pretrain.train.muon import DistributedMuon


def param_groups(
    model: torch.nn.Module, cfg: OptimizerConfig, exclude: Iterable[torch.nn.Parameter] = ()
) -> list[dict]:
    """Two AdamW groups: decayed matrices, and the rest (1-D norm gains, biases, embeddings per `no_decay`).

    Parameters in `exclude` (those Muon trains) are left out."""
    embedding_ids = embedding_parameter_ids(model)
    skip_ids = {id(p) for p in exclude}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in skip_ids:
            continue
        is_bias = name.endswith(".bias")
        is_norm = p.ndim == 1 and not is_bias  # norm gains are the only other 1-D weights in a transformer
        is_emb = id(p) in embedding_ids  # a tied LM head shares the embedding's parameter
        skip = (
            ("norm" in cfg.no_decay and is_norm)
            or ("bias" in cfg.no_decay and is_bias)
            or ("embedding" in cfg.no_decay and is_emb)
        )
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def describe_optimizers(cfg: OptimizerConfig) -> list[dict[str, str | float]]:
    """What trains which parameters, with its peak lr and settings (the model card's optimizer rows)."""
    betas = ", ".join(f"{b:g}" for b in cfg.betas)
    adamw_settings = f"betas ({betas}), eps {cfg.eps:g}, weight decay {cfg.weight_decay:g} (not on {', '.join(cfg.no_decay) or 'none'})"
    if cfg.name == "adamw":
        return [{"name": "AdamW", "trains": "every parameter", "lr": cfg.lr, "settings": adamw_settings}]
    m = cfg.muon
    muon_settings = (
        f"momentum {m.momentum:g}{' (Nesterov)' if m.nesterov else ''}, {m.ns_steps} Newton-Schulz steps, "
        f"lr scale `{m.adjust_lr}`, weight decay {m.weight_decay:g}"
    )
    return [
        {
            "name": "Muon",
            "trains": "the 2-D hidden matrices (attention and MLP projections)",
            "lr": m.lr,
            "settings": muon_settings,
        },
        {
            "name": "AdamW",
            "trains": "the embedding, the LM head, norm gains and biases",
            "lr": cfg.lr,
            "settings": adamw_settings,
        },
    ]


FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def by_layout(groups: list[dict]) -> list[dict]:
    """Each group split by how its parameters are laid out over the mesh: a fused or foreach kernel takes one
    list of tensors, and refuses plain tensors beside DTensors (tensor parallel leaves norm gains whole) or
    DTensors of different meshes (FSDP x TP). The update is elementwise, so the split changes no number."""
    out = []
    for group in groups:
        layouts: dict[object, list] = {}
        for p in group["params"]:
            mesh = getattr(p, "device_mesh", None)
            layouts.setdefault((mesh, p.placements) if mesh is not None else None, []).append(p)
        out += [{**group, "params": params} for params in layouts.values()] or [group]
    return out


def _adamw(params: list[dict], cfg: OptimizerConfig, device_type: str) -> torch.optim.AdamW:
    # torch's fused AdamW runs on CUDA and CPU: one pass over each tensor instead of foreach's dozen, which on
    # CPU (memory-bound) made the update 4-5x faster at the bench's 6.3M-parameter embedding
    fused = cfg.fused is True or (cfg.fused == "auto" and device_type in FUSED_ADAMW_DEVICES)
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(by_layout(params), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kwargs)


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig, device_type: str) -> torch.optim.Optimizer:
    """The recipe's optimizer over `model`'s trainable parameters (see the module docstring)."""
    if cfg.name == "adamw":
        return _adamw(param_groups(model, cfg), cfg, device_type)
    matrices = muon_parameters(model)
    m = cfg.muon
    muon = DistributedMuon(
        [{"params": matrices}],
        lr=m.lr,
        weight_decay=m.weight_decay,
        momentum=m.momentum,
        nesterov=m.nesterov,
        ns_steps=m.ns_steps,
        adjust_lr_fn=m.adjust_lr,
    )
    adamw = _adamw([g for g in param_groups(model, cfg, exclude=matrices) if g["params"]], cfg, device_type)
    return MuonAdamW(muon, adamw)


class MuonAdamW(torch.optim.Optimizer):
    """Muon and AdamW over disjoint parameters, stepped together and presented as one optimizer.

    `param_groups` lists AdamW's groups first (so `param_groups[0]["lr"]`, the logged lr, is AdamW's), then
    Muon's: the same dicts, so the schedule's lr changes reach both; `state_dict` holds both optimizers' state dicts, so checkpoints resume both exactly.
    The torch base class is not initialised: every method the loop, accelerate and the checkpoints use
    is defined here and delegates to the two optimizers.
    """

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):  # noqa: D107
        self.muon, self.adamw = muon, adamw
        self.defaults = {"muon": muon.defaults, "adamw": adamw.defaults}

    @property
    def optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        return self.adamw, self.muon

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {**self.muon.state, **self.adamw.state}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending = self.muon.step_begin()  # Muon's exchanges (FSDP2) run while AdamW steps
        self.adamw.step()
        self.muon.step_finish(pending)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise StageError(
                "the checkpoint's optimizer state was not written by muon (train.optimizer.name); "
                "resume with the optimizer the checkpoint was trained with"
            )
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])

    def add_param_group(self, param_group: dict) -> None:
        raise NotImplementedError("MuonAdamW: parameters are split between Muon and AdamW when it is built")

    def __repr__(self) -> str:
        return f"MuonAdamW(muon={self.muon!r}, adamw={self.adamw!r})"


def optimizer_parts(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
    """What torch's distributed state-dict functions take: MuonAdamW as its two optimizers (its own
    `state_dict` nests them, which `get_optimizer_state_dict` cannot read), any other optimizer as it is."""
    return [optimizer.adamw, optimizer.muon] if isinstance(optimizer, MuonAdamW) else optimizer
