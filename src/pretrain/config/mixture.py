"""Recipe section `mixture`: how `pretrain mixture` chooses the data mix by measurement.

The search trains `proxies` small runs, each on a candidate mix drawn around the recipe's own weights, scores each
on the `target` (per-source val bits/byte and benchmark bits/byte), fits how each source's share moves the target
and proposes the mix that minimises it, within the share bounds (`band`, `floor`, `max_repetition`).
"""

from __future__ import annotations

from pydantic import Field

from pretrain.config.base import SEED_LIMIT, Section


class MixtureConfig(Section):
    proxies: int = Field(
        12,
        ge=3,
        description="proxy runs, one per candidate mix (the recipe's own mix is the first); at least the number "
        "of sources + 2, so that every source's effect can be fitted and checked on held-out proxies",
    )
    target_sources: dict[str, float] = Field(
        default_factory=dict,
        description="per-source validation bits/byte in the target: {source name: weight}. A source named here "
        "must be one of data.sources",
    )
    target_tasks: dict[str, float] = Field(
        default_factory=dict,
        description="benchmark bits/byte of the gold answer (rc_bpb) in the target: {task: weight}, tasks of "
        "eval.tasks or eval.local_tasks (multiple choice or cloze). The target is the weighted mean of all "
        "components, lower is better",
    )
    task_limit: int | None = Field(
        200, gt=0, description="items of each target task a proxy is scored on; null = all"
    )
    val_batches: int = Field(
        8,
        gt=0,
        description="micro batches of each source's own val documents a proxy is scored on "
        "(train.validation.per_source_batches of the proxies)",
    )
    band: float = Field(
        2.0,
        gt=1,
        description="each source's share stays within [weight / band, weight x band] of the recipe's share, "
        "for the proxies and the proposal: short proxies barely see what starving a source costs a full run",
    )
    floor: float = Field(0.02, ge=0, lt=0.5, description="lowest share any source may get (0-0.5)")
    max_repetition: float = Field(
        4.0,
        gt=0,
        description="most times a source's packed train tokens may be read in the FULL run (train.tokens): caps "
        "its share at max_repetition x its tokens / the run's tokens",
    )
    concentration: float = Field(
        20.0,
        gt=0,
        description="Dirichlet concentration of the candidate mixes (the sum of its alphas, which are this x "
        "the recipe's shares): larger draws closer to the recipe's mix",
    )
    seed: int = Field(
        0, ge=0, lt=SEED_LIMIT, description="seeds the candidate mixes and the optimiser's candidates"
    )
    proxy_model: dict[str, int | float | bool | str] = Field(
        default_factory=dict,
        description="model keys of the proxies, over the recipe's model (e.g. {hidden_size: 64, "
        "num_hidden_layers: 2, intermediate_size: 192, num_attention_heads: 2, num_key_value_heads: 2}); "
        "empty = the recipe's model",
    )
    proxy_tokens: int = Field(
        gt=0,
        default=1_000_000,
        description="training tokens of each proxy (stem included), rounded down to whole proxy batches",
    )
    proxy_global_batch_tokens: int | None = Field(
        None, gt=0, description="tokens per optimizer step of the proxies; null = train.global_batch_tokens"
    )
    stem_fraction: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of each proxy's tokens trained once, on the recipe's mix (the stem, which is also the "
        "recipe-mix proxy); every other proxy branches from its checkpoint and trains only the rest on its own "
        "mix, with the decay. 0 = every proxy from scratch. The stem is counted once in the proxies' FLOPs",
    )
