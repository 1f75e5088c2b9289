"""Where each source of a mix came from, for the model card's provenance table and the curation report: the
origin (a Hub dataset id and the commit its revision resolved to, local files and the SHA-256 of their
content, or a built-in corpus and the Python that holds it) and the licence (the recipe's `license`, else a
Hub dataset card's, else the built-in corpus's own).

Hashing a local source reads its files a second time (at disk speed, in the curating process); a Hub source
asks the Hub once for its dataset info (bounded like every Hub request) and says "unresolved" when it cannot.
Newest document dates are not recorded: sources carry no common date field.
"""

from __future__ import annotations

import hashlib
import platform

from pretrain.config import BuiltinSource, HubSource, LocalSource, Recipe
from pretrain.core.integrity import sha256_of
from pretrain.data.local_files import expand_files
from pretrain.hub.session import bound_hub_requests, failure_reason

# the Python standard library and its documentation are under the Python Software Foundation License
BUILTIN_LICENSE = "PSF-2.0"


def local_origin(recipe: Recipe, src: LocalSource) -> dict:
    """The files' count, bytes and one SHA-256 over (relative name, content digest) of each, in path order."""
    files = expand_files(recipe, src)
    h = hashlib.sha256()
    total = 0
    for path in files:
        digest = sha256_of(path)
        h.update(f"{path.name}\0{digest}\n".encode())
        total += path.stat().st_size
    return {"origin": ", ".join(src.paths), "files": len(files), "bytes": total, "sha256": h.hexdigest()}


def hub_origin(src: HubSource) -> dict:
    """The dataset id, the revision asked for and the commit it resolved to, and its card's licence."""
    out = {"origin": f"hf://datasets/{src.path}", "revision": src.revision or "main", "commit": None}
    try:
        from huggingface_hub import HfApi

        bound_hub_requests()
        info = HfApi().dataset_info(src.path, revision=src.revision)
    except Exception as exc:  # offline, unreachable, gated: the table says so instead of failing curation
        out["unresolved"] = failure_reason(exc) or f"{type(exc).__name__}: {exc}"
        return out
    out["commit"] = info.sha
    card = getattr(info, "card_data", None)
    card_license = getattr(card, "license", None) if card is not None else None
    if card_license:
        out["card_license"] = card_license if isinstance(card_license, str) else ", ".join(card_license)
    return out


def source_provenance(recipe: Recipe, src) -> dict:
    """One source's row of the provenance table."""
    if isinstance(src, LocalSource):
        row = local_origin(recipe, src)
    elif isinstance(src, HubSource):
        row = hub_origin(src)
    elif isinstance(src, BuiltinSource):
        row = {"origin": f"builtin:{src.corpus}", "python": platform.python_version()}
    else:  # pragma: no cover - the schema has no other kind
        row = {"origin": src.type}
    declared = src.license or row.pop("card_license", None)
    if declared is None and isinstance(src, BuiltinSource):
        declared = BUILTIN_LICENSE
    row["license"] = declared or "not declared"
    return row
