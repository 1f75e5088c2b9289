"""Read documents from the three kinds of source: `hub` (datasets), `local` files, `builtin` corpora.

Every reader yields `(doc_id, text)` and fills a `ReadStats` (documents, bytes, undecodable bytes,
files). Local files are streamed line by line or block by block, so memory stays bounded; `.gz` and
`.zst` are decompressed on the fly. Broken input raises `DataError` naming the source and file.
"""

from __future__ import annotations

from collections.abc import Iterator

from pretrain.config import BuiltinSource, HubSource, LocalSource, Recipe
from pretrain.core.errors import DataError
from pretrain.data.builtin import builtin_units, iter_builtin
from pretrain.data.hub_sources import hub_units, iter_hub_parquet, iter_hub_unit
from pretrain.data.local_files import iter_local_unit, local_units
from pretrain.data.units import ROW_BITS, UNIT_BITS, ReadStats, Unit


def plan_units(recipe: Recipe) -> list[list[Unit]]:
    """Every source's units, in order (listing files, parquet footers, or the dataset's shards)."""
    plans = []
    for idx, src in enumerate(recipe.data.sources):
        units = plan_units_of(recipe, src, idx)
        if len(units) >= 1 << UNIT_BITS:
            raise DataError(
                f"source {src.name!r}: {len(units)} input units; at most {1 << UNIT_BITS} are supported"
            )
        plans.append(units)
    return plans


def task_units(plans: list[list[Unit]], world: int, rank: int) -> list[list[Unit]]:
    """Task `rank`'s units of every source: units are dealt round-robin over all sources in order."""
    mine: list[list[Unit]] = [[] for _ in plans]
    n = 0
    for idx, units in enumerate(plans):
        for unit in units:
            if n % world == rank:
                mine[idx].append(unit)
            n += 1
    return mine


def split_budget(total: int | None, units_per_task: list[int], rank: int) -> int | None:
    """Task `rank`'s part of a source budget: proportional to the units it holds (largest remainder)."""
    if total is None:
        return None
    held = sum(units_per_task)
    if held == 0:
        return 0
    parts = [total * u // held for u in units_per_task]
    order = sorted(range(len(parts)), key=lambda r: (-(total * units_per_task[r] % held), r))
    for r in order[: total - sum(parts)]:
        parts[r] += 1
    return parts[rank]


def iter_unit(recipe: Recipe, src, unit: Unit, stats: ReadStats) -> Iterator[tuple[int, str, str]]:
    """Yield `(row, doc_id, text)` for the documents of one unit (no budget: the caller applies its share)."""
    if isinstance(src, BuiltinSource):
        docs = iter_builtin(src.corpus, unit.start)
    elif isinstance(src, LocalSource):
        docs = iter_local_unit(src, unit, stats)
    elif isinstance(src, HubSource):
        docs = (
            iter_hub_parquet(src, unit, stats) if unit.path.endswith(".parquet") else iter_hub_unit(src, unit)
        )
    else:  # pragma: no cover
        raise DataError(f"source {src.name!r}: unknown type")
    for row, (doc_id, text) in enumerate(docs):
        if row >= 1 << ROW_BITS:
            raise DataError(f"source {src.name!r}: more than {1 << ROW_BITS} documents in {doc_id}")
        stats.docs += 1
        stats.bytes += len(text.encode("utf-8"))
        yield row, doc_id, text


def read_budgeted(
    recipe: Recipe, src, units: list[Unit], stats: ReadStats, max_docs: int | None, max_bytes: int | None
) -> Iterator[tuple[Unit, int, str, str]]:
    """`(unit, row, doc_id, text)` of `units` in order, stopping at `max_docs` documents or once `max_bytes`
    are reached (the document crossing the bound is included)."""
    if max_docs == 0 or max_bytes == 0:
        return
    docs = nbytes = 0
    for unit in units:
        for row, doc_id, text in iter_unit(recipe, src, unit, stats):
            yield unit, row, doc_id, text
            docs += 1
            nbytes += len(text.encode("utf-8"))
            if (max_docs is not None and docs >= max_docs) or (max_bytes is not None and nbytes >= max_bytes):
                return


def iter_source(recipe: Recipe, src, stats: ReadStats) -> Iterator[tuple[str, str]]:
    """Yield the documents of one source in order, honouring its whole budget (one reader, no tasks)."""
    units = plan_units_of(recipe, src, recipe.data.sources.index(src))
    for _, _, doc_id, text in read_budgeted(recipe, src, units, stats, src.budget.docs, src.budget.bytes):
        yield doc_id, text


def plan_units_of(recipe: Recipe, src, idx: int) -> list[Unit]:
    if isinstance(src, BuiltinSource):
        return [Unit(idx, i, start=i) for i in range(builtin_units(src.corpus))]
    if isinstance(src, LocalSource):
        return local_units(recipe, src, idx)
    return hub_units(src, idx)
