"""Recipe section `hub`: model card and Hub upload."""

from __future__ import annotations

from pydantic import Field, field_validator

from pretrain.config.base import Section
from pretrain.core.recipe_files import TEMPLATE_SUFFIXES


class HubConfig(Section):
    repo_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="Hub model repo `namespace/name` that `pretrain push` (and push_checkpoints) upload to; "
        "null = give --repo-id",
    )
    private: bool = Field(True, description="create the repo as private (an existing repo keeps its setting)")
    push_checkpoints: bool = Field(
        False,
        description="during training, upload every checkpoint in the background as branch step-NNNNNNN; "
        "needs repo_id",
    )
    card_template: str = Field(
        "base_model.md.j2",
        description="Jinja template of the model card, ending .j2 or .jinja: a file (absolute, or relative to "
        "the recipe), else the name of a template shipped in model_cards/. Rendered in Jinja's sandbox: it reads "
        "the card's facts and can call no code",
    )
    license: str = Field("apache-2.0", description="license id in the model card's front matter")
    language: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 language codes in the model card's front matter",
    )
    tags: list[str] = Field(
        default_factory=list,
        description="extra Hub tags, added to pretrained, base-model and pretraining-handbook",
    )

    @field_validator("card_template")
    @classmethod
    def _a_template_file(cls, value: str) -> str:
        if not value.endswith(TEMPLATE_SUFFIXES):
            raise ValueError(
                f"{value!r} is not a card template: name a Jinja file ending {' or '.join(TEMPLATE_SUFFIXES)} "
                "(the template's output becomes the uploaded README.md)"
            )
        return value
