"""Text normalisation applied to every document before filtering and dedup.

BOM and CRLF/CR line endings are unified, Unicode is NFC-composed, configured boilerplate regexes
(e.g. the Project Gutenberg header/footer) are cut, trailing spaces are stripped and runs of blank
lines shortened. Leading whitespace is never touched, so code indentation survives.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pretrain.config.data import NormalizeConfig

_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)

# Ready-made patterns a recipe names in `strip_patterns` instead of writing the regex.
NAMED_PATTERNS = {
    # Project Gutenberg books: keeps only the text between the START and END markers
    "gutenberg": r"(?s)\A.*?\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n"
    r"|\n\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*\Z",
}


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(NAMED_PATTERNS.get(pattern, pattern), re.MULTILINE)


def normalize(text: str, cfg: NormalizeConfig, strip_patterns: tuple[str, ...] = ()) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.unicode_nfc and not text.isascii():
        text = unicodedata.normalize("NFC", text)
    for pattern in strip_patterns:
        text = _compiled(pattern).sub("", text)
    if cfg.strip_trailing_whitespace:
        text = _TRAILING.sub("", text)
    blank_run = "\n" * (cfg.max_blank_lines + 2)
    if blank_run in text:
        text = re.sub("\n{" + str(cfg.max_blank_lines + 2) + ",}", "\n" * (cfg.max_blank_lines + 1), text)
    return text.strip("\n")
