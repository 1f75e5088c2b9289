"""The curation report: per source, docs/bytes read, dropped (by class and reason) and kept, decontamination
hits per task, and the totals, as `curation_report.json` (read by the model card) and `curation_report.md`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pretrain.data.curation_report import REPORT_FILES, SourceReport, render_markdown, write_reports


def recipe(enabled: bool = True, ngram: int = 13):
    return SimpleNamespace(
        name="tiny", data=SimpleNamespace(decontaminate=SimpleNamespace(enabled=enabled, ngram=ngram))
    )


def web() -> SourceReport:
    rep = SourceReport(
        "web", "hub", 0.75, read_docs=1000, read_bytes=2_500_000, files=3, input_bytes=2_600_000
    )
    rep.dropped = {
        "quality": {
            "docs": 40,
            "bytes": 80_000,
            "reasons": {"gopher_short": 5, "c4_curly": 30, "fineweb_lines": 3, "x": 2},
            "examples": ["naïve text"],
        },
        "dedup": {"docs": 100, "bytes": 200_000, "reasons": {"exact": 100}, "examples": []},
        "contamination": {
            "docs": 3,
            "bytes": 9_000,
            "reasons": {"hellaswag": 2, "arc_easy": 1},
            "examples": [],
        },
    }
    rep.set_kept(857, 2_211_000, 0.75)
    rep.achieved_share = 0.812345
    return rep


def code() -> SourceReport:
    rep = SourceReport("code", "local", 0.25, read_docs=200, read_bytes=600_000)
    rep.dropped = {"contamination": {"docs": 4, "bytes": 1_000, "reasons": {"hellaswag": 4}, "examples": []}}
    rep.set_kept(196, 599_000, 0.25)
    rep.achieved_share = 0.187655
    return rep


def test_set_kept_records_the_kept_documents_and_the_requested_share():
    rep = SourceReport("web", "hub", 3.0)
    rep.set_kept(10, 1234, 0.6)
    assert (rep.kept_docs, rep.kept_bytes, rep.requested_share, rep.achieved_share) == (10, 1234, 0.6, 0.0)


def test_a_source_report_has_the_documented_json_layout():
    rep = SourceReport(
        "code", "local", 0.25, read_docs=200, read_bytes=600, undecodable_bytes=7, files=2, input_bytes=650
    )
    rep.set_kept(190, 580, 0.123456)
    rep.achieved_share = 0.987654
    assert rep.to_json() == {
        "name": "code",
        "type": "local",
        "weight": 0.25,
        "requested_share": 0.1235,
        "achieved_share": 0.9877,
        "read": {"docs": 200, "bytes": 600, "undecodable_bytes": 7, "files": 2, "input_bytes": 650},
        "dropped": {},
        "kept": {"docs": 190, "bytes": 580},
    }


def test_each_report_gets_its_own_dropped_mapping():
    a, b = SourceReport("a", "hub", 1.0), SourceReport("b", "hub", 1.0)
    a.dropped["dedup"] = {}
    assert b.dropped == {}


def test_both_report_files_are_written_into_the_folder(tmp_path):
    write_reports(tmp_path, recipe(), [web(), code()], {"hellaswag": ["x"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_FILES)
    data = json.loads((tmp_path / "curation_report.json").read_text(encoding="utf-8"))
    assert (tmp_path / "curation_report.md").read_text(encoding="utf-8") == render_markdown(data)


def test_the_json_names_the_recipe_and_every_source_in_order(tmp_path):
    write_reports(tmp_path, recipe(), [web(), code()], {})
    data = json.loads((tmp_path / "curation_report.json").read_text(encoding="utf-8"))
    assert data["recipe"] == "tiny"
    assert data["sources"] == [web().to_json(), code().to_json()]


def test_contamination_hits_are_summed_over_sources_and_every_checked_task_is_listed(tmp_path):
    write_reports(tmp_path, recipe(), [web(), code()], {"hellaswag": ["a"], "winogrande": ["b"]})
    data = json.loads((tmp_path / "curation_report.json").read_text(encoding="utf-8"))
    assert data["contamination"] == {"hellaswag": 6, "winogrande": 0, "arc_easy": 1}
    assert data["contamination_unchecked"] == {}


def test_the_totals_add_up_the_sources(tmp_path):
    write_reports(tmp_path, recipe(), [web(), code()], {})
    data = json.loads((tmp_path / "curation_report.json").read_text(encoding="utf-8"))
    assert data["totals"] == {
        "read_docs": 1200,
        "read_bytes": 3_100_000,
        "kept_docs": 1053,
        "kept_bytes": 2_810_000,
    }


@pytest.mark.parametrize(("enabled", "expected"), [(True, 8), (False, None)])
def test_the_decontamination_ngram_is_recorded_only_when_decontamination_ran(tmp_path, enabled, expected):
    write_reports(tmp_path, recipe(enabled, ngram=8), [code()], {})
    data = json.loads((tmp_path / "curation_report.json").read_text(encoding="utf-8"))
    assert data["decontamination_ngram"] == expected


def test_non_ascii_text_is_kept_as_written(tmp_path):
    write_reports(tmp_path, recipe(), [web()], {})
    assert "naïve text" in (tmp_path / "curation_report.json").read_text(encoding="utf-8")


def markdown(**unchecked) -> str:
    data = {
        "recipe": "tiny",
        "sources": [web().to_json(), code().to_json()],
        "contamination": {"hellaswag": 6, "arc_easy": 1},
        "contamination_unchecked": unchecked,
        "totals": {"read_docs": 1200, "read_bytes": 3_100_000, "kept_docs": 1053, "kept_bytes": 2_810_000},
    }
    return render_markdown(data)


def test_the_markdown_mixture_table_has_a_row_per_source():
    lines = markdown().splitlines()
    assert lines[0] == "# Curation report — tiny"
    assert "| web | hub | 1,000 | 2.5MB | 857 | 2.21MB | 81.2% | 75.0% |" in lines
    assert "| code | local | 200 | 600KB | 196 | 599KB | 18.8% | 25.0% |" in lines


def test_removed_stages_are_listed_largest_first_with_their_top_three_reasons():
    lines = markdown().splitlines()
    removed = [line for line in lines if line.startswith("| web |") and line.count("|") == 6]
    assert removed == [
        "| web | dedup | 100 | 200KB | exact (100) |",
        "| web | quality | 40 | 80KB | c4_curly (30), gopher_short (5), fineweb_lines (3) |",
        "| web | contamination | 3 | 9KB | hellaswag (2), arc_easy (1) |",
    ]


def test_decontamination_lists_hits_per_task_and_the_tasks_not_checked():
    text = markdown(mmlu="its data is on the Hub and HF_DATASETS_OFFLINE is set")
    assert "- hellaswag: 6 documents removed\n- arc_easy: 1 documents removed" in text
    assert "- mmlu: **not checked** (its data is on the Hub and HF_DATASETS_OFFLINE is set)" in text


def test_without_tasks_the_markdown_says_nothing_was_checked():
    data = {
        "recipe": "tiny",
        "sources": [],
        "contamination": {},
        "contamination_unchecked": {},
        "totals": {"read_docs": 0, "read_bytes": 0, "kept_docs": 0, "kept_bytes": 0},
    }
    assert "- no evaluation task with items to check against" in render_markdown(data)


def test_the_markdown_ends_with_the_totals():
    assert markdown().endswith(
        "\n\nTotal: 1,200 documents (3.1MB) read → 1,053 clean documents (2.81MB); "
        "`pretrain pack` mixes them by token share.\n"
    )
