"""Units of a hub source, planned from a dataset folder laid out as on the Hub (no network: HF_*_OFFLINE)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain.config import HubSource
from pretrain.core.errors import DataError
from pretrain.data import hub_sources
from pretrain.data.hub_sources import hub_units


@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    """`org/ds` relative to the working directory: two parquet files of 5 documents in data/, as the Hub has."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "ds" / "data").mkdir(parents=True)
    for i in range(2):
        table = pa.table({"text": [f"document {i}.{j}" for j in range(5)]})
        pq.write_table(table, tmp_path / "org" / "ds" / "data" / f"train-0000{i}-of-00002.parquet")
    return "org/ds"


def _source(path: str, streaming: bool) -> HubSource:
    return HubSource(name="web", type="hub", path=path, split="train", streaming=streaming, weight=1)


def test_a_streamed_parquet_split_is_one_unit_per_file(dataset):
    units = hub_units(_source(dataset, streaming=True), 3)
    assert [(u.source_idx, u.index, u.whole_file) for u in units] == [(3, 0, True), (3, 1, True)]
    assert [u.path.rsplit("/", 1)[-1] for u in units] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]


def test_a_downloaded_split_is_cut_into_row_ranges(dataset, monkeypatch):
    monkeypatch.setattr(hub_sources, "HUB_UNIT_ROWS", 4)
    units = hub_units(_source(dataset, streaming=False), 0)
    assert [(u.start, u.stop) for u in units] == [(0, 4), (4, 8), (8, 10)]


def test_an_unreachable_dataset_is_one_line_naming_the_source(dataset):
    with pytest.raises(DataError) as err:
        hub_units(_source("org/missing", streaming=True), 0)
    message = str(err.value)
    assert message.startswith("source 'web': cannot load dataset 'org/missing': cannot reach the Hub")
    assert "\n" not in message
