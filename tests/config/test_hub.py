"""Recipe section `hub`: where `pretrain push` uploads and what the model card's front matter says."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.hub import HubConfig


def test_the_defaults_push_nothing_and_create_a_private_repo():
    hub = HubConfig()
    assert hub.repo_id is None and hub.private is True and hub.push_checkpoints is False
    assert hub.card_template == "base_model.md.j2"
    assert (hub.license, hub.language, hub.tags) == ("apache-2.0", ["en"], [])


def test_each_recipe_gets_its_own_language_and_tag_lists():
    a, b = HubConfig(), HubConfig()
    a.language.append("fr")
    a.tags.append("code")
    assert b.language == ["en"] and b.tags == []


@pytest.mark.parametrize("repo_id", ["me/tiny", "HuggingFaceTB/SmolLM2-135M", "org_1/model.v2"])
def test_a_namespace_and_name_is_a_repo_id(repo_id):
    assert HubConfig(repo_id=repo_id).repo_id == repo_id


@pytest.mark.parametrize(
    "repo_id", ["tiny", "me/", "/tiny", "me/tiny/extra", "me/ti ny", "-me/tiny", "me/-tiny"]
)
def test_a_repo_id_needs_exactly_a_namespace_and_a_name(repo_id):
    with pytest.raises(ValidationError, match="repo_id"):
        HubConfig(repo_id=repo_id)


def test_values_are_not_coerced():
    with pytest.raises(ValidationError, match="private"):
        HubConfig(private="yes")
    with pytest.raises(ValidationError, match="language"):
        HubConfig(language="en")


def test_an_unknown_key_is_an_error():
    with pytest.raises(ValidationError, match="push_checkpoint"):
        HubConfig(push_checkpoint=True)


@pytest.mark.parametrize("template", ["../../../../etc/passwd", "card.md", "secrets.txt", "model_cards"])
def test_a_card_template_must_be_a_jinja_file(template):
    """Its output becomes the uploaded README.md: any readable file used to be accepted as the card."""
    with pytest.raises(
        ValidationError, match="is not a card template: name a Jinja file ending .j2 or .jinja"
    ):
        HubConfig(card_template=template)


def test_a_link_named_like_a_template_must_lead_to_one(tmp_path):
    from pretrain.core.recipe_files import find_card_template

    (tmp_path / "real.md.j2").write_text("# {{ recipe.name }}")
    (tmp_path / "card.md.j2").symlink_to("/etc/passwd")
    (tmp_path / "ok.md.j2").symlink_to(tmp_path / "real.md.j2")
    assert find_card_template("card.md.j2", lambda name: tmp_path / name) is None
    assert find_card_template("ok.md.j2", lambda name: tmp_path / name) == tmp_path / "ok.md.j2"
