"""Models and tokenizers to start from: a `PretrainedRef` (config/refs.py) to a local folder.

    ref = parse_pretrained_ref("HuggingFaceTB/SmolLM2-135M@main", recipe.resolve_path, "model.init_from")
    folder = fetch(ref, MODEL_FILES, what="model.init_from")

Hub downloads go through `huggingface_hub.snapshot_download` (HF_ENDPOINT, HF_TOKEN and the cache are honoured)
and fetch only the files asked for, every request bounded in time (hub/session.py; huggingface_hub retries its
metadata requests a bounded number of times); the commit they resolved to is the folder's name, so the model card
can name the exact parent (`PretrainedRef.describe`).
"""

from __future__ import annotations

from pathlib import Path

from pretrain.config.refs import PretrainedRef
from pretrain.core.errors import PretrainError
from pretrain.core.network import NETWORK_ERRORS
from pretrain.hub.session import bound_hub_requests, failure_reason

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


class PullError(PretrainError):
    """A parent model or tokenizer could not be found or downloaded; the message says what to do."""


def fetch(ref: PretrainedRef, patterns: list[str], what: str) -> Path:
    """The local folder holding `patterns` of `ref` (downloading them from the Hub when needed)."""
    if ref.folder is not None:
        return ref.folder
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    bound_hub_requests()
    where = ref.where
    try:
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=patterns))
    except RevisionNotFoundError:
        raise PullError(
            f"{what}: {where}: no revision {ref.revision!r} in that repo; name a branch, tag or commit"
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
            else f"cannot reach the Hub at {constants.ENDPOINT} ({failure_reason(exc) or 'no answer'})"
        )
        raise PullError(
            f"{what}: {where}: not in the local Hub cache and {why}; check your network, proxy and "
            "HF_ENDPOINT, or give a local folder"
        ) from None
    except HfHubHTTPError as exc:  # before NETWORK_ERRORS: it is an httpx2.HTTPError too
        status = getattr(getattr(exc, "response", None), "status_code", None)
        hint = "a server error; try again later" if (status or 0) >= 500 else "check the repo id and HF_TOKEN"
        raise PullError(
            f"{what}: {where}: the Hub at {constants.ENDPOINT} answered HTTP {status or '?'} ({hint}), or give a "
            "local folder"
        ) from None
    except NETWORK_ERRORS as exc:
        raise PullError(
            f"{what}: {where}: cannot reach the Hub at {constants.ENDPOINT} ({failure_reason(exc)}); "
            "check your network, proxy and HF_ENDPOINT, or give a local folder"
        ) from None
