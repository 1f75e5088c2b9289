"""A proxy's recipe: the proxy shape with the stated lr rule, the stem and its branch point, the same data."""

from __future__ import annotations

import pytest

from pretrain.commands.mixture_proxies import ProxyPlan, proxy_recipe, proxy_steps
from pretrain.commands.stages import fingerprint
from pretrain.config import load_recipe
from pretrain.core.errors import MixtureError

SETTINGS = [
    "mixture.proxy_model={hidden_size: 32, intermediate_size: 96}",
    "mixture.proxy_tokens=409600",
    "mixture.proxy_global_batch_tokens=4096",
    "mixture.stem_fraction=0.3",
]
PRIOR = {"stdlib_code": 0.6, "stdlib_docs": 0.3, "pydoc_topics": 0.1}


def tiny(tmp_path, *overrides):
    return load_recipe(
        "recipes/tiny/config.yaml", overrides=[*SETTINGS, *overrides], output_dir=str(tmp_path)
    )


def test_stem_and_branch_recipes(tmp_path):
    recipe = tiny(tmp_path)
    assert proxy_steps(recipe) == (4096, 100, 30)
    stem = proxy_recipe(recipe, ProxyPlan(-1, PRIOR, stem=True), PRIOR)
    other = {"stdlib_code": 0.5, "stdlib_docs": 0.4, "pydoc_topics": 0.1}
    branch = proxy_recipe(recipe, ProxyPlan(1, other, stem=False), PRIOR)
    for proxy in (stem, branch):
        assert proxy.model.hidden_size == 32 and proxy.train.steps == 100
        assert proxy.train.optimizer.lr == pytest.approx(recipe.train.optimizer.lr * 2)  # sqrt(128 / 32)
        assert proxy.train.optimizer.muon.lr == recipe.train.optimizer.muon.lr
        assert proxy.train.stage_shares() == pytest.approx([0.3, 0.7])
        assert proxy.train.data_stages[0].weights == PRIOR  # the stem's part is the recipe's mix for everyone
        assert proxy.train.schedule.decay_fraction == pytest.approx(
            0.7
        )  # the branch point is before the decay
        assert proxy.eval.rc_bpb and proxy.train.validation.per_source_batches == recipe.mixture.val_batches
        assert fingerprint(proxy, "pack") == fingerprint(
            recipe, "pack"
        )  # the same packed data, never re-packed
    assert branch.train.data_stages[1].weights == other
    assert stem.train.checkpoint.every_steps == 30 and stem.train.checkpoint.keep_last == 4  # 30 kept
    assert branch.train.checkpoint.every_steps == 100
    assert stem.out.parent == branch.out.parent == recipe.layout.mixture / "proxies"
    assert branch.out.name.startswith("p01-") and stem.out.name == "stem"
    assert proxy_recipe(recipe, ProxyPlan(0, PRIOR, stem=False), PRIOR).out.name == "p00-prior"


def test_too_few_proxy_steps_is_an_error(tmp_path):
    with pytest.raises(MixtureError, match="fewer than 4 proxy batches"):
        proxy_steps(tiny(tmp_path, "mixture.proxy_tokens=8192"))
