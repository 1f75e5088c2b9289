"""Upload a checkpoint to the Hub (or a folder, with `--dry-run`), safetensors and card only.

What is uploaded: `*.safetensors`, `*.json` configs and tokenizer files, `README.md`, `*.png`, minus what the
caller's `UploadFilter` leaves out (the owner of a folder's format says which: `train.checkpoint.upload_filter`
keeps `trainer_state/` back unless asked, and the stage marker). The token comes from
`huggingface_hub`'s usual resolution (`HF_TOKEN`, `hf auth login`) and is never printed or written.
Uploads are one commit per push and idempotent: re-pushing the same folder changes nothing.

Before anything is created the token is checked (`whoami`): no token, a token the Hub rejects (401) or a
read-only token is a `HubPushError` that says how to log in. Every request is bounded in time (hub/session.py:
`PRETRAIN_HUB_TIMEOUT_S`, 120 s by default; a Hub that accepts the commit and never answers used to hold the push
for ever), and a failure that may pass (no answer, a refused connection, DNS, HTTP 5xx, on the token check too)
is tried `HUB_ATTEMPTS` times in all; then it is a one-line `HubPushError` naming the endpoint and the attempts;
`retryable` tells the background pusher whether trying again later can help.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.core.errors import PretrainError
from pretrain.core.network import NETWORK_ERRORS
from pretrain.hub.session import HUB_ATTEMPTS, bound_hub_requests, failure_reason, hub_timeout_s, retrying

ALLOWED_SUFFIXES = (".safetensors", ".json", ".md", ".png", ".txt", ".model", ".jinja")
LOGIN_HINT = "run `hf auth login` or set HF_TOKEN to a token with write access"
_ACCEPTED_TOKENS: set[tuple[str, str]] = set()  # (endpoint, token) pairs whoami accepted in this process


class HubPushError(PretrainError):
    """A push failed: one line saying why and what to do. `retryable`: a later try may succeed (network, 5xx);
    `reason`: the cause and its fix without the `pretrain push` retry advice (the background pusher's own)."""

    def __init__(self, message: str, retryable: bool = False, reason: str | None = None):
        super().__init__(" ".join(message.split()))
        self.retryable = retryable
        self.reason = " ".join((reason or message).split())


@dataclass(frozen=True)
class UploadFilter:
    """What of a folder is not uploaded, besides hidden files and suffixes outside `ALLOWED_SUFFIXES`."""

    skip_names: frozenset[str] = field(default_factory=frozenset)
    """File names left out wherever they are (a stage marker, local results)."""
    skip_dirs: frozenset[str] = field(default_factory=frozenset)
    """Top-level folders left out whole."""
    whole_dirs: frozenset[str] = field(default_factory=frozenset)
    """Top-level folders uploaded as they are, whatever their files' suffixes (optimizer state on request)."""


def files_to_upload(folder: Path, skip: UploadFilter) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder)
        top = rel.parts[0] if len(rel.parts) > 1 else None
        if top in skip.whole_dirs:
            files.append(rel)
            continue
        if top in skip.skip_dirs or rel.name in skip.skip_names:
            continue
        if rel.name.startswith(".") or path.suffix not in ALLOWED_SUFFIXES:
            continue
        files.append(rel)
    return files


def stage_upload(folder: Path, dest: Path, skip: UploadFilter) -> list[Path]:
    """Copy exactly what would be uploaded into `dest` (the dry run, and the staging area of a push)."""
    files = files_to_upload(folder, skip)
    if not any(f.suffix == ".safetensors" for f in files):
        raise PretrainError(f"{folder}: no model.safetensors — not a model folder")
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / rel, dest / rel)
    return files


def _token_source() -> str:
    return "HF_TOKEN" if os.environ.get("HF_TOKEN") else "the token saved by `hf auth login`"


def check_token(endpoint: str) -> None:
    """Resolve the token as `huggingface_hub` does and ask the Hub whose it is; `HubPushError` if unusable.

    The request has the Hub timeout (`PRETRAIN_HUB_TIMEOUT_S`, hub/session.py): a Hub that accepts connections
    but never answers fails here instead of hanging the push; a 5xx is retried by `push_folder`. A token once
    accepted is not checked again in this process (`whoami` is rate-limited); a rate-limited check (429) lets the
    push go on.
    """
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    token = get_token()
    if token is None:
        why = (
            f"no Hugging Face token found (neither HF_TOKEN nor a saved login); {LOGIN_HINT} "
            f"(tokens: {endpoint}/settings/tokens)"
        )
        raise HubPushError(f"push: {why}, then re-run", reason=why)
    if (endpoint, token) in _ACCEPTED_TOKENS:
        return
    response = get_session().get(
        f"{endpoint}/api/whoami-v2",
        headers=build_hf_headers(token=token),
        timeout=hub_timeout_s(),
    )
    if response.status_code == 401:
        why = (
            f"the Hub at {endpoint} rejected the token from {_token_source()} (HTTP 401: invalid or expired); "
            f"create a new write token at {endpoint}/settings/tokens and {LOGIN_HINT}"
        )
        raise HubPushError(f"push: {why}, then re-run", reason=why)
    if response.status_code == 429:
        return
    hf_raise_for_status(response)  # other statuses: reported by push_folder like any failed request
    try:
        who = response.json()
    except ValueError:
        raise HfHubHTTPError(f"{endpoint}/api/whoami-v2: not a JSON answer", response=response) from None
    role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        why = (
            f"the token from {_token_source()} is read-only; create a write token at "
            f"{endpoint}/settings/tokens and {LOGIN_HINT}"
        )
        raise HubPushError(f"push: {why}, then re-run", reason=why)
    _ACCEPTED_TOKENS.add((endpoint, token))


def push_folder(
    folder: Path,
    repo_id: str,
    revision: str | None = None,
    private: bool = True,
    *,
    skip: UploadFilter,
    commit_message: str | None = None,
    source: Path | None = None,
    attempts: int = HUB_ATTEMPTS,
    backoff_s: float | None = None,
) -> str:
    """Check the token, create the repo (and branch), upload the folder; returns the commit URL.

    Every request is bounded in time, and a failure that may pass is tried `attempts` times in all (pushes are
    idempotent). Every failure is a one-line `HubPushError` (see the module docstring); nothing is deleted
    locally. `source`: the folder to name in messages and the default commit message when `folder` is a
    staging copy.
    """
    bound_hub_requests()
    return retrying(
        lambda: _push_once(folder, repo_id, revision, private, skip, commit_message, source, attempts),
        lambda exc: isinstance(exc, HubPushError) and exc.retryable,
        attempts,
        backoff_s,
    )


def _push_once(
    folder: Path,
    repo_id: str,
    revision: str | None,
    private: bool,
    skip: UploadFilter,
    commit_message: str | None,
    source: Path | None,
    attempts: int,
) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    source = Path(source or folder)
    api = HfApi()
    endpoint = api.endpoint
    target = f"{repo_id}@{revision or 'main'}"
    branch = f" --revision {revision}" if revision and revision != "main" else ""
    tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
    retry = (
        f"the model stays in {source}; re-run `pretrain push {source} --repo-id {repo_id}{branch}` to retry "
        "(pushes are idempotent)"
    )
    try:
        check_token(endpoint)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pretrain-push-") as tmp:
            stage_upload(folder, Path(tmp), skip)
            info = api.upload_folder(
                folder_path=tmp,
                repo_id=repo_id,
                revision=revision or "main",
                commit_message=commit_message or f"Upload {source.name}",
            )
    except OfflineModeIsEnabled:
        raise HubPushError(
            f"push of {source} to {target}: HF_HUB_OFFLINE is set, so no request is sent; unset it "
            f"(`HF_HUB_OFFLINE=0 pretrain push ...`) — {retry}"
        ) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status >= 500:
            reason = (
                f"the Hub at {endpoint} answered HTTP {status} (a server error, {tries}); try again later"
            )
            raise HubPushError(
                f"push of {source} to {target} failed: {reason} — {retry}", retryable=True, reason=reason
            ) from None
        if status == 401:
            hint = f"the token from {_token_source()} was refused; {LOGIN_HINT}"
        elif status == 403:
            hint = f"the token may not write to {repo_id}; check the namespace or {LOGIN_HINT}"
        else:
            hint = "check the repo id and your token"
        reason = f"the Hub at {endpoint} answered HTTP {status or '?'}: {hint}"
        raise HubPushError(
            f"push of {source} to {target} failed ({reason}), then re-run — pushes are idempotent",
            reason=reason,
        ) from None
    except NETWORK_ERRORS as exc:  # refused, timeout, DNS
        why = failure_reason(exc)
        reason = (
            f"cannot reach the Hub at {endpoint} ({why}, {tries}); check your network, proxy and HF_ENDPOINT"
        )
        raise HubPushError(
            f"push of {source} to {target} failed: {reason} — {retry}", retryable=True, reason=reason
        ) from None
    return str(getattr(info, "commit_url", info))
