"""The recipe schema as dotted keys: the key syntax, resolving a key to its fields, listing every key, and
the error for a key the schema does not define."""

from __future__ import annotations

import pytest

from pretrain.config import Recipe
from pretrain.config.data import DataConfig
from pretrain.config.keys import ITEM, KeyField, all_keys, join_key, resolve, split_key
from pretrain.config.optimizer import OptimizerConfig
from pretrain.config.sources import BuiltinSource, HubSource, LocalSource
from pretrain.config.train import DataStage
from pretrain.core.errors import PretrainError


@pytest.mark.parametrize(
    "key",
    ["data.sources[0].weight", "data.sources.0.weight", " data.sources[0].weight ", "data..sources.0.weight"],
)
def test_an_index_in_brackets_or_after_a_dot_is_the_same_part(key):
    assert split_key(key) == ["data", "sources", "0", "weight"]


def test_empty_brackets_mean_every_item_of_a_list():
    assert split_key("data.sources[].weight") == ["data", "sources", ITEM, "weight"]


def test_join_writes_items_in_brackets_and_indexes_after_a_dot():
    assert join_key(["data", "sources", ITEM, "weight"]) == "data.sources[].weight"
    assert join_key(["data", "sources", "0", "weight"]) == "data.sources.0.weight"
    assert join_key([]) == ""


@pytest.mark.parametrize("key", ["train.optimizer.lr", "data.sources[].weight", "train.data_stages[].share"])
def test_split_then_join_gives_back_a_canonical_key(key):
    assert join_key(split_key(key)) == key


def test_a_plain_key_resolves_to_its_one_field_and_the_section_declaring_it():
    (field,) = resolve("train.optimizer.lr")
    assert isinstance(field, KeyField)
    assert (field.name, field.owner, field.variant, field.members) == ("lr", OptimizerConfig, None, 1)
    assert field.info is OptimizerConfig.model_fields["lr"]


def test_a_top_level_section_resolves_to_its_recipe_field():
    (field,) = resolve("data")
    assert field.owner is Recipe and field.info.annotation is DataConfig


def test_a_key_of_every_union_member_resolves_once_per_member():
    fields = resolve("data.sources[].weight")
    assert [f.owner for f in fields] == [HubSource, LocalSource, BuiltinSource]
    assert [f.variant for f in fields] == ["type: hub", "type: local", "type: builtin"]
    assert {f.members for f in fields} == {3}


def test_a_key_of_one_union_member_says_which_member():
    (field,) = resolve("data.sources.0.paths")
    assert (field.owner, field.variant, field.members) == (LocalSource, "type: local", 3)


def test_an_entry_of_a_free_form_mapping_is_the_mapping_field():
    (field,) = resolve("train.data_stages[].weights.web")
    assert (field.name, field.owner) == ("weights", DataStage)


def test_a_key_below_an_entry_of_a_mapping_is_unknown():
    with pytest.raises(PretrainError, match="unknown recipe key"):
        resolve("train.data_stages[].weights.web.x")


def test_an_unknown_key_names_what_lacks_it_and_suggests_close_keys():
    with pytest.raises(PretrainError) as info:
        resolve("train.optimizer.lrr")
    message = str(info.value)
    assert message.startswith(
        "explain: unknown recipe key 'train.optimizer.lrr': train.optimizer has no key 'lrr'"
    )
    assert "did you mean train.optimizer.lr" in message


def test_a_bare_field_name_suggests_every_key_of_that_name():
    with pytest.raises(PretrainError, match=r"did you mean train\.optimizer\.lr, train\.optimizer\.muon\.lr"):
        resolve("lr")


def test_a_key_below_a_value_is_an_error_saying_it_is_a_value():
    with pytest.raises(PretrainError, match=r"train\.seq_len is a value, not a section; it has no key 'x'"):
        resolve("train.seq_len.x")


def test_a_list_of_sections_must_be_indexed():
    with pytest.raises(
        PretrainError, match=r"index it: data\.sources\[\]\.weight or data\.sources\.0\.weight"
    ):
        resolve("data.sources.weight")


def test_an_index_on_a_section_that_is_not_a_list_is_an_error():
    with pytest.raises(PretrainError, match=r"train is not a list of sections; drop '\[\]'"):
        resolve("train[]")
    with pytest.raises(PretrainError, match=r"the recipe is not a list of sections; drop '0'"):
        resolve("0.train")


def test_no_key_at_all_is_an_error_with_an_example():
    with pytest.raises(PretrainError, match="give a key, e.g. train.optimizer.lr"):
        resolve("  ")


def test_a_key_no_schema_key_resembles_points_at_the_section_listing():
    with pytest.raises(PretrainError, match="`pretrain explain train` lists a section's keys"):
        resolve("qqqqqqqqqqqqqq")


def test_all_keys_lists_sections_before_their_keys_and_list_items_with_brackets():
    keys = all_keys()
    assert keys[0] == next(iter(Recipe.model_fields))  # depth first, from the first top-level field
    assert keys.index("train") < keys.index("train.optimizer") < keys.index("train.optimizer.lr")
    assert "data.sources[].weight" in keys and "data.sources.0.weight" not in keys
    assert len(keys) == len(set(keys))


def test_all_keys_lists_each_key_of_a_union_once():
    keys = all_keys()
    assert keys.count("data.sources[].weight") == 1
    assert (
        "data.sources[].paths" in keys and "data.sources[].corpus" in keys and "data.sources[].path" in keys
    )


def test_every_listed_key_resolves():
    for key in all_keys():
        assert resolve(key), key
