"""Before curation starts: can every source be read? A Hub dataset is asked for its file listing (one metadata
request, no data), local files must exist (the recipe's own validation checks them), built-in corpora are
always there.
"""

from __future__ import annotations

from pretrain.config import HubSource, Recipe
from pretrain.core.verdict import Verdict
from pretrain.hub.access import HubUnreachable, dataset_facts


def is_hub_repo(src: HubSource) -> bool:
    """A Hub dataset id (`owner/name`), as opposed to one of `datasets`' packaged builders (`json`, `parquet`)."""
    return "/" in src.path


def hub_dataset_problem(names: list[str], path: str, revision: str | None) -> str | None:
    """Why the dataset the sources `names` read cannot be listed (with the fix), or None when its files were."""
    at = f"@{revision}" if revision else ""
    which = "source" + ("s " if len(names) > 1 else " ") + ", ".join(repr(n) for n in names)
    try:
        facts = dataset_facts(path, revision)
    except HubUnreachable as exc:
        return (
            f"{which}: cannot list {path}{at} ({exc.reason}); run where the Hub is reachable, or curate once "
            "with network access so that `pretrain run` finds mix/ current"
        )
    except LookupError as exc:
        return (
            f"{which}: {path}{at}: {exc} on the Hub (or not readable with this token); check data.sources path "
            "and revision, and accept the dataset's terms on its page if it is gated"
        )
    if not facts.files:
        return f"{which}: {path}{at} lists no files"
    return None


def sources_verdict(recipe: Recipe) -> Verdict:
    """✓ naming how many sources were checked, ✗ naming each Hub dataset that cannot be listed (once per
    dataset and revision, whichever sources read it)."""
    hub = [s for s in recipe.data.sources if isinstance(s, HubSource) and is_hub_repo(s)]
    datasets: dict[tuple[str, str | None], list[str]] = {}
    for src in hub:
        datasets.setdefault((src.path, src.revision), []).append(src.name)
    problems = [p for (path, rev), names in datasets.items() if (p := hub_dataset_problem(names, path, rev))]
    if problems:
        return Verdict.failed("sources", "; ".join(problems))
    kinds = f"{len(datasets)} Hub dataset(s) listed" if datasets else "no Hub dataset"
    return Verdict.passed("sources", f"{len(recipe.data.sources)} source(s) readable ({kinds})")
