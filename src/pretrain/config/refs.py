"""A model or tokenizer to start from, as a recipe spells it: `<Hub id | local folder>[@revision]`.

    ref = parse_pretrained_ref("HuggingFaceTB/SmolLM2-135M@main", recipe.resolve_path, "model.init_from")

A local folder (relative to the recipe) wins over a Hub id of the same spelling. This module only reads the
spelling (validation needs no network); `hub/pull.py` fetches what a reference names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pretrain.core.errors import PretrainError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class RefError(PretrainError):
    """A `tokenizer.pretrained` / `model.init_from` value that is neither a folder nor a Hub id."""


@dataclass(frozen=True)
class PretrainedRef:
    spec: str  # as written in the recipe
    repo_id: str | None  # None: a local folder
    revision: str | None  # branch, tag or commit of a Hub repo (None: main)
    folder: Path | None  # the local folder, when it is one

    @property
    def where(self) -> str:
        """The Hub repo as messages name it: `owner/name[@revision]`."""
        return f"{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    def describe(self, folder: Path) -> dict[str, str | None]:
        """What the model card names: the id (or folder), the revision asked for and the commit it resolved to."""
        if self.repo_id is None:
            return {"model": str(self.folder), "revision": None, "commit": None}
        commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
        return {"model": self.repo_id, "revision": self.revision or "main", "commit": commit}


def parse_pretrained_ref(spec: str, resolve_path: Callable[[str], Path], what: str) -> PretrainedRef:
    """`<Hub id | local folder>[@revision]`; an existing local folder is always taken as one."""
    local = resolve_path(spec)
    if local.is_dir():
        return PretrainedRef(spec, None, None, local)
    repo_id, _, revision = spec.partition("@")
    if not HUB_ID.match(repo_id) or (_ and not revision):
        raise RefError(
            f"{what}: {spec!r} is neither an existing folder nor a Hub id (`owner/name[@revision]`)"
        )
    return PretrainedRef(spec, repo_id, revision or None, None)
