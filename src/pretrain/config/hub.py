"""Recipe section `hub`: model card and Hub upload."""

from __future__ import annotations

from pydantic import Field

from pretrain.config.base import Section


class HubConfig(Section):
    repo_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    private: bool = True
    push_checkpoints: bool = False
    card_template: str = Field("base_model.md.j2", description="file in model_cards/ (or a path)")
    license: str = "apache-2.0"
    language: list[str] = Field(default_factory=lambda: ["en"])
    tags: list[str] = Field(default_factory=list)
