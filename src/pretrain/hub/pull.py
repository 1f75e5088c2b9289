"""Models and tokenizers to start from: `<Hub id | local folder>[@revision]` to a local folder.

    ref = parse_pretrained_ref("HuggingFaceTB/SmolLM2-135M@main", recipe.resolve_path)
    folder = ref.fetch(MODEL_FILES, what="model.init_from")

A local folder (relative to the recipe) wins over a Hub id of the same spelling. Hub downloads go through
`huggingface_hub.snapshot_download` (HF_ENDPOINT, HF_TOKEN and the cache are honoured) and fetch only the
files asked for; the commit they resolved to is kept, so the model card can name the exact parent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pretrain.core.errors import PretrainError
from pretrain.core.network import NETWORK_ERRORS, network_reason

# what continued pretraining reads from a parent model: config and safetensors weights, never pickles
MODEL_FILES = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json"]
REMOTE_CODE_FILES = ["*.py"]
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class PullError(PretrainError):
    """A parent model or tokenizer could not be found or downloaded; the message says what to do."""


@dataclass(frozen=True)
class PretrainedRef:
    spec: str  # as written in the recipe
    repo_id: str | None  # None: a local folder
    revision: str | None  # branch, tag or commit of a Hub repo (None: main)
    folder: Path | None  # the local folder, when it is one

    def fetch(self, patterns: list[str], what: str) -> Path:
        """The local folder holding `patterns` (downloading them from the Hub when needed)."""
        if self.folder is not None:
            return self.folder
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        where = f"{self.repo_id}" + (f"@{self.revision}" if self.revision else "")
        try:
            return Path(snapshot_download(self.repo_id, revision=self.revision, allow_patterns=patterns))
        except RevisionNotFoundError:
            raise PullError(
                f"{what}: {where}: no revision {self.revision!r} in that repo; name a branch, tag or commit"
            ) from None
        except GatedRepoError:
            raise PullError(
                f"{what}: {where}: gated repo; accept its terms on the Hub and set HF_TOKEN (or `hf auth login`)"
            ) from None
        except RepositoryNotFoundError:
            raise PullError(
                f"{what}: {where}: no such model repo at {constants.ENDPOINT} (or it is private: set HF_TOKEN); "
                "check the id, or give a local folder"
            ) from None
        except LocalEntryNotFoundError as exc:  # snapshot_download's answer when the Hub cannot be reached
            why = (
                "downloads are off (HF_HUB_OFFLINE=1)"
                if constants.HF_HUB_OFFLINE
                else f"cannot reach the Hub at {constants.ENDPOINT} ({network_reason(exc.__context__ or exc)})"
            )
            raise PullError(
                f"{what}: {where}: not in the local Hub cache and {why}; check your network, proxy and "
                "HF_ENDPOINT, or give a local folder"
            ) from None
        except NETWORK_ERRORS as exc:
            raise PullError(
                f"{what}: {where}: cannot reach the Hub at {constants.ENDPOINT} ({network_reason(exc)}); "
                "check your network, proxy and HF_ENDPOINT, or give a local folder"
            ) from None

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
        raise PullError(
            f"{what}: {spec!r} is neither an existing folder nor a Hub id (`owner/name[@revision]`)"
        )
    return PretrainedRef(spec, repo_id, revision or None, None)
