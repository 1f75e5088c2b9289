"""Text normalisation (data/normalize.py): BOM, line endings, NFC, trailing spaces, blank runs, patterns."""

from __future__ import annotations

import pytest

from pretrain.config.data import NormalizeConfig
from pretrain.data.normalize import NAMED_PATTERNS, normalize

DEFAULT = NormalizeConfig()


def test_bom_is_removed():
    assert normalize("\ufeffhello", DEFAULT) == "hello"


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_line_endings_become_newlines(ending):
    assert normalize(f"one{ending}two{ending}three", DEFAULT) == "one\ntwo\nthree"


def test_unicode_is_nfc_composed_unless_turned_off():
    decomposed = "cafe\u0301"
    assert normalize(decomposed, DEFAULT) == "caf\u00e9"
    assert normalize(decomposed, NormalizeConfig(unicode_nfc=False)) == decomposed


def test_trailing_spaces_go_and_indentation_stays():
    text = "def f():  \n    return 1\t\n"
    assert normalize(text, DEFAULT) == "def f():\n    return 1"
    assert normalize(text, NormalizeConfig(strip_trailing_whitespace=False)) == "def f():  \n    return 1\t"


def test_blank_line_runs_are_shortened():
    text = "a\n\n\n\n\n\nb"
    assert normalize(text, DEFAULT) == "a\n\n\nb"  # at most max_blank_lines (2) blank lines
    assert normalize(text, NormalizeConfig(max_blank_lines=1)) == "a\n\nb"
    assert normalize("a\n\n\nb", DEFAULT) == "a\n\n\nb"


def test_gutenberg_header_and_footer_are_cut():
    book = (
        "The Project Gutenberg eBook of X\nlicense\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n"
        "Chapter 1.\nIt was a dark night.\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nmore license"
    )
    assert "gutenberg" in NAMED_PATTERNS
    assert normalize(book, DEFAULT, ("gutenberg",)) == "Chapter 1.\nIt was a dark night."


def test_custom_patterns_are_regexes_applied_per_line():
    text = "keep\nAdvertisement: buy\nkeep too"
    assert normalize(text, DEFAULT, (r"^Advertisement:.*\n",)) == "keep\nkeep too"
