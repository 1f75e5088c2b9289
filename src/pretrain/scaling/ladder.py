"""The design of a model ladder: which small models of the recipe's family, on which token budgets.

A ladder fits the recipe's own scaling law (scaling/fit.py) from small runs of the same code path,
data, tokenizer and architecture family (Hoffmann et al. 2022; OLMo's model ladder). The design is
pure arithmetic on the recipe, so `pretrain ladder --dry-run`-style checks and the tests need no training:

- the target: the recipe's run (non-embedding parameters N_t, tokens D_t), or the Chinchilla optimum
  of a FLOP budget;
- `ladder.sizes` sizes, geometric between `smallest`·N_t and `largest`·N_t. Each size's shape keeps
  the recipe's head dimension, query/kv head ratio and MLP ratio; width and depth are chosen so that the
  non-embedding count is close to the size and width/depth shrinks with size as in SmolLM2 / Llama;
- every size trains on each budget of `ladder.budgets`. The longest budget is one warmup-stable-decay
  run; each shorter one *branches* at the step its decay starts (a checkpoint of the long run, where the
  lr is still at its peak and the data order the same) and decays over its own last `decay_fraction`.
  The branches cost only their decay, so three budgets cost ~1.2 runs instead of 1.75. Steps are
  rounded so that every branch point is a multiple of the long run's checkpoint interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import AutoConfig, PretrainedConfig

from pretrain.config import Recipe
from pretrain.modeling import build_hf_config, count_parameters
from pretrain.scaling.chinchilla import compute_optimal as chinchilla_optimum
from pretrain.scaling.family import Family, LadderError, Shape
from pretrain.scaling.flops import flops_per_token
from pretrain.tokens.tokenizer import load_tokenizer, rounded_vocab


def recipe_vocab(recipe: Recipe) -> tuple[int, str]:
    """The vocabulary the model gets: the trained tokenizer's, else `tokenizer.vocab_size` rounded."""
    tok = recipe.layout.tokenizer
    if (tok / "tokenizer.json").exists():
        return len(load_tokenizer(tok)), f"from {tok}"
    return rounded_vocab(recipe.tokenizer.vocab_size), "tokenizer.vocab_size rounded to a multiple of 64"


@dataclass(frozen=True)
class Run:
    """One training run of the ladder: a size on one token budget (a long run or a branch of one)."""

    name: str  # e.g. "s2-b1": size 2 (0 = smallest), budget 1 (0 = shortest)
    size: int
    budget: int
    shape: Shape
    params: int
    non_embedding_params: int
    steps: int
    tokens: int
    warmup_steps: int
    decay_start: int  # first step of the lr decay; a branch starts from the long run's checkpoint here
    branch_of: str | None  # the long run this one branches from (None: it is the long run)
    checkpoint_every: int | None  # long runs: checkpoint interval (every branch point is a multiple)
    flops: float  # training FLOPs (scaling/flops.py convention)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> Run:
        return cls(**{**raw, "shape": Shape(**raw["shape"])})


@dataclass(frozen=True)
class LadderDesign:
    target_non_embedding_params: float
    target_tokens: float
    target_source: str  # "recipe" or "budget 1e21 FLOPs"
    global_batch_tokens: int
    micro_batch_size: int
    decay_fraction: float
    runs: list[Run]

    @property
    def flops(self) -> float:
        return sum(r.flops for r in self.runs)

    def long_runs(self) -> list[Run]:
        return [r for r in self.runs if r.branch_of is None]

    def sizes(self) -> list[int]:
        return sorted({r.non_embedding_params for r in self.runs})


def decay_steps(steps: int, decay_fraction: float) -> int:
    """Steps of a WSD run's decay; the same rounding as `train.schedules.lr_multiplier`."""
    return max(1, int(round(decay_fraction * steps)))


def steps_for_decay_start(start: int, decay_fraction: float) -> int:
    """The run length whose WSD decay starts at step `start` (S − decay(S) takes every integer value)."""
    steps = start + 1
    while steps - decay_steps(steps, decay_fraction) < start:
        steps += 1
    if steps - decay_steps(steps, decay_fraction) != start:  # pragma: no cover - arithmetic guarantee
        raise LadderError(f"no run length decays from step {start} at decay_fraction {decay_fraction}")
    return steps


def _branch_quantum(starts: list[float]) -> int:
    """A checkpoint interval that every decay start is (nearly) a multiple of: few checkpoints, small error."""
    shortest = max(1, int(round(min(starts))))
    for parts in range(1, 9):
        quantum = max(1, shortest // parts)
        if all(abs(s / quantum - round(s / quantum)) <= 0.1 * s / quantum for s in starts):
            return quantum
    return max(1, shortest // 8)


def target_of(recipe: Recipe, budget_flops: float | None) -> tuple[float, float, str]:
    """(non-embedding params, tokens, what they come from) of the run the ladder forecasts."""
    if budget_flops is not None:
        params, tokens = chinchilla_optimum(budget_flops)
        return params, tokens, f"Chinchilla-optimal split of {budget_flops:.3g} FLOPs"
    vocab, _ = recipe_vocab(recipe)
    total, non_emb = count_parameters(build_hf_config(recipe, vocab))
    steps = recipe.train.total_steps(total)
    return float(non_emb), float(steps * recipe.train.global_batch_tokens), "the recipe's run"


def rung_config(recipe: Recipe, shape: Shape, vocab: int) -> PretrainedConfig:
    fields = {**recipe.model.hf_fields, **shape.model_fields(), "vocab_size": vocab}
    return AutoConfig.for_model(recipe.model.model_type, **fields)


def design_ladder(recipe: Recipe, budget_flops: float | None = None) -> LadderDesign:
    """The ladder for `recipe` (or for the Chinchilla optimum of `budget_flops`); raises LadderError."""
    cfg, train = recipe.ladder, recipe.train
    target_params, target_tokens, source = target_of(recipe, budget_flops)
    vocab, _ = recipe_vocab(recipe)
    _, recipe_non_emb = count_parameters(build_hf_config(recipe, vocab))
    family = Family.of(recipe, grow=target_params * cfg.largest > recipe_non_emb)
    batch = cfg.global_batch_tokens or train.global_batch_tokens
    micro = cfg.micro_batch_size or train.micro_batch_size
    if batch % (micro * train.seq_len):
        raise LadderError(
            f"{recipe.source_label}: ladder.global_batch_tokens={batch} is not a multiple of "
            f"micro_batch_size*seq_len={micro * train.seq_len}"
        )
    decay = train.schedule.decay_fraction
    floor = family.approx_non_embedding(family.shape(1, 1))  # one layer, one head: the smallest model
    if budget_flops is not None and cfg.smallest * target_params < floor:
        raise LadderError(
            f"--budget-flops {budget_flops:.3g}: its compute-optimal model has {target_params:.3g} parameters, "
            f"so the smallest rung ({cfg.smallest:g} of it, {cfg.smallest * target_params:.3g}) is below the "
            f"smallest model of this family (1 layer of {family.head_dim} hidden, {floor:.3g}); raise the budget"
        )
    ratios = [cfg.smallest * (cfg.largest / cfg.smallest) ** (i / (cfg.sizes - 1)) for i in range(cfg.sizes)]
    shapes = [family.closest(r * target_params, target_params) for r in ratios]
    if len(set(shapes)) < len(shapes):
        raise LadderError(
            f"{recipe.source_label}: ladder: {cfg.sizes} sizes between {cfg.smallest:g} and {cfg.largest:g} of "
            f"{target_params:.3g} parameters give only {len(set(shapes))} distinct shapes (head dim "
            f"{family.head_dim}); too few rungs for the fit: widen smallest..largest or lower ladder.sizes"
        )
    budgets = sorted(cfg.budgets)
    runs: list[Run] = []
    for size, shape in enumerate(shapes):
        config = rung_config(recipe, shape, vocab)
        total, non_emb = count_parameters(config)
        per_token = flops_per_token(config, non_emb, train.seq_len)
        scale = non_emb if cfg.budget_unit == "tokens_per_param" else target_tokens
        wanted = [b * scale / batch for b in budgets]  # steps
        short = [s for s in wanted if s < cfg.min_steps]
        if short:
            b = budgets[wanted.index(short[0])]
            raise LadderError(
                f"{recipe.source_label}: ladder.budgets: budget {b:g} ({cfg.budget_unit}) of size s{size} "
                f"({non_emb:,} params) is {short[0]:.1f} steps of {batch:,} tokens, under ladder.min_steps="
                f"{cfg.min_steps}; raise the budgets or lower ladder.global_batch_tokens"
            )
        starts = [s - decay_steps(round(s), decay) for s in wanted]
        quantum = _branch_quantum(starts)
        starts = [max(quantum, int(round(s / quantum)) * quantum) for s in starts]
        if len(set(starts)) < len(starts):
            raise LadderError(
                f"{recipe.source_label}: ladder.budgets {budgets} collapse to the same run length for size "
                f"s{size}; spread them further apart"
            )
        warmup = max(1, int(round(cfg.warmup_fraction * min(wanted))))
        if warmup >= starts[0]:
            raise LadderError(
                f"{recipe.source_label}: ladder.warmup_fraction: {warmup} warmup steps reach the decay of the "
                f"shortest budget of size s{size} (step {starts[0]}); lower it or raise the budgets"
            )
        long_name = f"s{size}-b{len(budgets) - 1}"
        for index, start in enumerate(starts):
            steps = steps_for_decay_start(start, decay)
            is_long = index == len(starts) - 1
            runs.append(
                Run(
                    name=f"s{size}-b{index}",
                    size=size,
                    budget=index,
                    shape=shape,
                    params=total,
                    non_embedding_params=non_emb,
                    steps=steps,
                    tokens=steps * batch,
                    warmup_steps=warmup,
                    decay_start=start,
                    branch_of=None if is_long else long_name,
                    checkpoint_every=quantum if is_long else None,
                    # a branch trains only from its decay start
                    flops=per_token * batch * (steps if is_long else steps - start),
                )
            )
    # each size's long run first: its checkpoints are where the branches start
    runs.sort(key=lambda r: (r.size, r.branch_of is not None, r.budget))
    design = LadderDesign(
        target_non_embedding_params=target_params,
        target_tokens=target_tokens,
        target_source=source,
        global_batch_tokens=batch,
        micro_batch_size=micro,
        decay_fraction=decay,
        runs=runs,
    )
    span = design.sizes()[-1] / design.sizes()[0]
    if span < 10 * 0.8:  # rounding to whole heads/layers may shrink the configured >= 10x a little
        raise LadderError(
            f"{recipe.source_label}: ladder: the shapes span only {span:.1f}x in non-embedding parameters "
            f"({design.sizes()[0]:,} to {design.sizes()[-1]:,}); widen smallest..largest"
        )
    if budget_flops is not None:
        smallest = min(r.non_embedding_params * r.tokens * 6 for r in runs)
        if budget_flops < smallest:
            raise LadderError(
                f"--budget-flops {budget_flops:.3g} is below the smallest rung's compute ({smallest:.3g} "
                f"FLOPs, s0-b0): a ladder cannot forecast a run smaller than its own rungs; raise the budget"
            )
    return design
