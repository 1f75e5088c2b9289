"""What a run will ask of the Hub, asked before it starts: can this token write to the repo, and is each Hub
dataset there (its files listed, its revision resolved, the licence its card declares).

Both are one metadata request each (a timeout of `HF_HUB_ETAG_TIMEOUT`, huggingface_hub's own), so
`pretrain preflight` answers in seconds, and the data provenance of the model card (`dataset_facts`) names the
exact commit a source resolved to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pretrain.core.network import NETWORK_ERRORS, network_reason
from pretrain.core.verdict import Verdict
from pretrain.hub.push import HubPushError, check_token


@dataclass(frozen=True)
class DatasetFacts:
    """A Hub dataset as the Hub describes it at one revision."""

    repo_id: str
    sha: str
    """The commit the revision resolved to."""
    files: list[str] = field(default_factory=list)
    license: str | None = None
    """As declared by the dataset card's front matter (`license:`), None when it declares none."""
    last_modified: str | None = None


class HubUnreachable(Exception):
    """The Hub could not be asked (offline mode, network): `reason` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _offline_reason() -> str | None:
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE is set, so no request is sent" if constants.HF_HUB_OFFLINE else None


def dataset_facts(repo_id: str, revision: str | None = None) -> DatasetFacts:
    """The dataset's files, resolved commit and declared licence; `HubUnreachable` when the Hub cannot be
    asked, `LookupError` when it answers that the dataset (or revision) does not exist or is not readable."""
    offline = _offline_reason()
    if offline:
        raise HubUnreachable(offline)
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().dataset_info(repo_id, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise LookupError(
            type(exc).__name__.removesuffix("Error").replace("NotFound", " not found")
        ) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise HubUnreachable(f"the Hub answered HTTP {status}") from None
    except NETWORK_ERRORS as exc:
        raise HubUnreachable(network_reason(exc)) from None
    card = getattr(info, "card_data", None)
    licence = card.get("license") if card is not None else None
    if isinstance(licence, list):
        licence = ", ".join(map(str, licence))
    modified = getattr(info, "last_modified", None)
    return DatasetFacts(
        repo_id=repo_id,
        sha=info.sha or "",
        files=[s.rfilename for s in info.siblings or []],
        license=licence,
        last_modified=modified.isoformat() if hasattr(modified, "isoformat") else modified,
    )


def push_access_verdict(repo_id: str) -> Verdict:
    """✓ when the token resolves, is a write token and its owner may write to `repo_id`'s namespace."""
    offline = _offline_reason()
    if offline:
        return Verdict.failed(
            "hub push",
            f"hub.repo_id {repo_id}: {offline}; unset it for the run, or set hub.push_checkpoints: false",
        )
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        check_token(api.endpoint)
        who = api.whoami()
    except HubPushError as exc:
        return Verdict.failed("hub push", exc.reason)
    except NETWORK_ERRORS as exc:
        return Verdict.failed(
            "hub push",
            f"cannot reach the Hub at {api.endpoint} ({network_reason(exc)}); check the network / HF_ENDPOINT",
        )
    except Exception as exc:  # an HTTP error of whoami: the token cannot be used
        return Verdict.failed(
            "hub push", f"the Hub refused the token ({type(exc).__name__}); run `hf auth login`"
        )
    namespace = repo_id.split("/")[0]
    mine = {who.get("name")} | {org.get("name") for org in who.get("orgs") or []}
    if namespace not in mine:
        return Verdict.failed(
            "hub push",
            f"hub.repo_id {repo_id}: the token belongs to {who.get('name')!r}, which is not {namespace!r} nor one "
            f"of its organisations ({', '.join(sorted(n for n in mine if n)) or 'none'}); use a repo id under your "
            "namespace or a token of its owner",
        )
    return Verdict.passed("hub push", f"write token of {who.get('name')!r} for {repo_id}")
