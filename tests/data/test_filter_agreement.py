"""Our Gopher quality / Gopher repetition / FineWeb filters (data/filters.py, on the shared split of data/words.py)
decide like datatrove's own filters (which split words with spaCy's pipeline): same keep/drop, same reason.

Crafted documents cover every rule and the tokenizer's corners (contractions, abbreviations, URLs, hyphen runs,
curly quotes, numbers, tied n-grams); real documents come from ../shared/data (skipped when absent): a quick
sample in the default suite, half of them (~10 MB) under `slow`. Both require >= 99.5% identical decisions; the crafted ones
and the quick sample are in fact identical.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

pytest.importorskip("spacy")
pytest.importorskip("datatrove")

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.text import split_into_words  # noqa: E402

from pretrain.config.data import NormalizeConfig  # noqa: E402
from pretrain.data.filters import gopher_repetition  # noqa: E402
from pretrain.data.normalize import normalize  # noqa: E402
from pretrain.data.quality import fineweb_quality, gopher_quality
from pretrain.data.words import DocumentWords, split_words  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
PAIRS = [
    ("gopher_repetition", gopher_repetition, GopherRepetitionFilter()),
    ("gopher_quality", gopher_quality, GopherQualityFilter()),
    ("fineweb", fineweb_quality, FineWebQualityFilter()),
]

SENTENCE = (
    "The committee said that it would have to look again at the plan, and that the members of "
    "the board were not sure of the cost."
)
CRAFTED = {
    "clean_prose": " ".join([SENTENCE] * 1).replace("plan", "new plan")
    + "\n"
    + " ".join(
        f"Sentence {i} of the text talks about item {i * 7} and the way it is used with care."
        for i in range(12)
    ),
    "contractions": " ".join(
        "I don't think we can't; you're sure it's John's? They'll go, I'm told, and we've said we'd cannot "
        "'em ain't gonna O'Brien's rock'n'roll y'all."
        for _ in range(6)
    ),
    "abbreviations_urls": " ".join(
        f"Dr. Smith met Mr. Jones at St. Paul's on Jan. {i} at 10 a.m., e.g. via https://example.com/x?{i}, "
        f"U.S. Corp. and J. R. R. Tolkien (the author) wrote to info{i}@example.org; see p. {i}."
        for i in range(8)
    ),
    "hyphens_and_quotes": " ".join(
        f"“Well,” said Emma--“indeed!--no;--it was a twenty-{i}-year-old well-known man--and so on.” ‘Yes,’ "
        "he said:-- 'twas -- the end-- of --it."
        for i in range(8)
    ),
    "numbers": " ".join(
        f"It cost $1,{i}00.50 (about 3.14% or 1/2 of the 10km run at 10:30) in 1914)The year {i}-{i + 1}."
        for i in range(10)
    ),
    "bullets": "\n".join(f"- item {i} of the list with the words and to" for i in range(40)),
    "end_ellipsis": "\n".join(f"The story of the day {i} and then..." for i in range(30)),
    "hashes": " ".join(f"#tag{i} # the # and # of #" for i in range(30)),
    "symbols": " ".join("... ; -- !!! ??? the and of" for _ in range(40)),
    "short_words": " ".join("a an I to be of in at it is on" for _ in range(20)),
    "long_words": " ".join("internationalization counterrevolutionaries the and" for _ in range(20)),
    "no_stop_words": " ".join(f"Alpha beta gamma delta {i}." for i in range(30)),
    "capitalised_stop_words": " ".join(
        f"The alpha{i} beta gamma delta epsilon, With zeta eta theta iota kappa Of lambda mu."
        for i in range(20)
    ),
    "numbers_only": " ".join(f"{i} {i * 3} {i * 7}." for i in range(60)) + " the and of",
    "repeated_lines": "\n".join(["the same line of the text is here."] * 20 + [SENTENCE] * 2),
    "repeated_paragraphs": "\n\n".join([SENTENCE] * 3 + [SENTENCE.upper()] * 2),
    "top_2gram": " ".join(["of the"] * 60 + SENTENCE.split() * 2) + ".",
    "top_ngram_ties": " ".join(["aaaa b", "c dd"] * 30 + SENTENCE.split()) + ".",
    "dup_5grams": " ".join((SENTENCE.split()[:12] + [f"w{i}" for i in range(6)]) * 3 + SENTENCE.split()),
    "dup_10grams_sparse": " ".join(
        SENTENCE.split() + [f"filler{i} and the" for i in range(40)] + SENTENCE.split()[:11]
    ),
    "no_terminal_punctuation": "\n".join(f"a line about the thing {i} and the other" for i in range(20)),
    "short_lines": "\n".join(f"Go {i}." for i in range(40)) + "\n" + SENTENCE,
    "list_like": "\n".join(f"Item {i}: the and of." for i in range(60)),
    "whitespace_kinds": ("the\tand\u00a0of  two\u2003spaces, and\u2028a line. " * 30).strip(),
    "unicode": " ".join(
        "Café naïve façade — the «quoted» and „low“ marks … of 東京 and ½ ² ⅓." for _ in range(10)
    ),
    "emoticon_free_punctuation": " ".join("(see [1]) {x} <b> & * _emph_ the and of;" for _ in range(20)),
}


def _theirs(filter_obj, text: str) -> str | None:
    result = filter_obj.filter(Document(text=text, id=""))
    return None if result is True else result[1]


def _disagreements(texts: list[str]) -> list[tuple[str, str | None, str | None, str]]:
    out = []
    for text in texts:
        doc = DocumentWords(text)
        for name, ours, theirs in PAIRS:
            a, b = ours(doc), _theirs(theirs, text)
            if a != b:
                out.append((name, b, a, text[:80]))
    return out


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_documents_split_and_decide_like_datatrove(name):
    text = CRAFTED[name]
    assert split_words(text) == split_into_words(text)
    assert _disagreements([text]) == []


def test_crafted_documents_exercise_every_filter_outcome():
    """The crafted set is not all keeps: each filter drops some of it, for several reasons."""
    reasons = {name: set() for name, _, _ in PAIRS}
    for text in CRAFTED.values():
        doc = DocumentWords(text)
        for name, ours, _ in PAIRS:
            reasons[name].add(ours(doc))
    assert all(None in r and len(r) >= 3 for r in reasons.values()), reasons


def _real_documents(limit_bytes: int, stride: int) -> list[str]:
    """~3 KB windows of the prose corpora plus C4 and WikiText documents, every `stride`-th, normalised."""
    texts = []
    for pattern in ("gutenberg/*.txt", "tinystories/*.txt", "wiki_demo/*.txt", "nltk_state_union/*"):
        for path in sorted(SHARED.glob(pattern)):
            text = path.read_text(encoding="utf-8", errors="replace")
            chunk = ""
            for para in re.split(r"\n\s*\n", text):
                chunk = f"{chunk}\n\n{para}" if chunk else para
                if len(chunk) >= 3000:
                    texts.append(chunk)
                    chunk = ""
    for line in (SHARED / "c4_demo" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["text"])
    texts += (SHARED / "wikitext2_tokens" / "valid.txt").read_text(encoding="utf-8").split("\n")[:2000:4]
    cfg = NormalizeConfig()
    docs, size = [], 0
    for text in texts[::stride]:
        text = normalize(text, cfg)
        if text.strip():
            docs.append(text)
            size += len(text)
        if size >= limit_bytes:
            break
    return docs


def _agreement(docs: list[str]) -> tuple[float, list]:
    dis = _disagreements(docs)
    return 1 - len({d[3] for d in dis}) / len(docs), dis


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_real_documents_decide_like_datatrove_quick():
    docs = _real_documents(10**9, stride=60)  # ~94 documents of every kind, ~0.25 MB
    assert len(docs) >= 90
    rate, dis = _agreement(docs)
    assert rate >= 0.995, dis


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_real_documents_decide_like_datatrove_full():
    docs = _real_documents(10**9, stride=2)  # half of all documents, ~10 MB
    rate, dis = _agreement(docs)
    print(f"\nagreement: {rate:.5f} on {len(docs)} documents; disagreements: {dis}")
    assert rate >= 0.995, dis


def _repetitive_documents(count: int, seed: int = 5) -> list[str]:
    """Documents from small vocabularies with copied spans: every repetition rule fires on some of them."""
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        vocab = [f"w{j}" * rng.randint(1, 3) for j in range(rng.choice([3, 8, 20, 60, 300]))]
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 300))]
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 5)):
                a, b, span = rng.randrange(len(words)), rng.randrange(len(words)), rng.randint(2, 15)
                words[b : b + span] = words[a : a + span]
        docs.append(rng.choice([" ", " ", "\n", ". "]).join(words))
    return docs


def test_repetitive_documents_decide_like_datatrove():
    """The n-gram shortcuts (a count bound for the top n-grams, candidates from the (n-1)-grams for the
    duplicated ones) decide like datatrove on documents where every repetition reason occurs."""
    filter_obj = GopherRepetitionFilter()
    docs = _repetitive_documents(400)
    ours = [gopher_repetition(DocumentWords(text)) for text in docs]
    theirs = [_theirs(filter_obj, text) for text in docs]
    assert ours == theirs
    reasons = set(ours)
    assert {None, "top_2_gram", "top_3_gram", "duplicated_5_n_grams", "dup_line_frac"} <= reasons
    assert any(r and r.startswith("duplicated_") and r != "duplicated_5_n_grams" for r in reasons)
