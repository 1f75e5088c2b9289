"""Recipe section `mixture`: its bounds are the schema's, so a bad value is refused before any proxy trains."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.mixture import MixtureConfig


def test_defaults_stem_half_of_each_proxy_on_the_recipe_mix():
    config = MixtureConfig()
    assert config.proxies >= 3 and 0 <= config.stem_fraction < 1
    assert config.target_sources == {} and config.target_tasks == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [("proxies", 2), ("stem_fraction", 1.0), ("floor", 0.5), ("task_limit", 0), ("val_batches", 0)],
)
def test_out_of_bounds_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ValidationError) as err:
        MixtureConfig(**{key: value})
    assert err.value.errors()[0]["loc"] == (key,)


def test_an_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="proxys"):
        MixtureConfig(proxys=12)
