"""Tokenizer extension (`tokenizer.extend`): new tokens appended to a reused BPE tokenizer, and their record.

    extended, record = extend_tokenizer(parent, texts, recipe.tokenizer.extend, min_frequency=2, parent_name=spec)
    record.save(out)                                    # <tokenizer>/tokenizer_extension.json
    record = TokenizerExtensionRecord.read(folder)      # training setup: which rows to add, from which rows

Learnt tokens continue the parent's BPE on a sample of the mix: every word (the parent's pre-tokenization)
starts as the parent's own segmentation, and the most frequent adjacent pair whose string the parent lacks
becomes a new token with a new merge, ranked after all of the parent's merges. Encoding applies merges by
rank, so the parent's segmentation is computed first and the new merges only join its tokens: the parent's
ids, merges and special tokens are unchanged, and a text without the new strings encodes as before. Listed
tokens are added the Hugging Face way (added tokens, matched before BPE). The result is a plain
`tokenizer.json` folder that `AutoTokenizer.from_pretrained` loads without this project.

Each new token records its sub-tokens: the parent's encoding of the token (the parent's BPE applied to the
token's string for a learnt token, which is one pre-tokenized word piece; `parent.encode(text)` for a listed
one). With `model.init_from`, its embedding (and untied output) row starts as the mean of those rows.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from pretrain.config.tokenizer import TokenizerExtension
from pretrain.core.errors import PretrainError, StageError
from pretrain.tokens.merges import learn_merges

EXTENSION_FILE = "tokenizer_extension.json"
BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class NewToken:
    id: int
    token: str  # as the tokenizer's vocabulary spells it (byte-level alphabet for a learnt token)
    kind: str  # "learnt" (from the mix) or "listed" (tokenizer.extend.tokens)
    parent_ids: tuple[int, ...]  # the parent's encoding of the token: its new rows start as their mean


@dataclass(frozen=True)
class TokenizerExtensionRecord:
    """What `tokenizer_extension.json` holds: the parent, its size, and every appended token."""

    parent: str  # tokenizer.pretrained or model.init_from, as the recipe spells it
    parent_vocab_size: int  # the parent tokenizer's number of ids; new ids start here
    tokens: tuple[NewToken, ...]

    @property
    def vocab_size(self) -> int:
        return self.parent_vocab_size + len(self.tokens)

    def count(self, kind: str) -> int:
        return sum(t.kind == kind for t in self.tokens)

    def save(self, folder: Path) -> None:
        data = {
            "parent": self.parent,
            "parent_vocab_size": self.parent_vocab_size,
            "learnt": self.count("learnt"),
            "listed": self.count("listed"),
            "tokens": [{**asdict(t), "parent_ids": list(t.parent_ids)} for t in self.tokens],
        }
        (Path(folder) / EXTENSION_FILE).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, folder: Path) -> TokenizerExtensionRecord:
        path = Path(folder) / EXTENSION_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tokens = tuple(
                NewToken(int(t["id"]), str(t["token"]), str(t["kind"]), tuple(map(int, t["parent_ids"])))
                for t in data["tokens"]
            )
            return cls(str(data["parent"]), int(data["parent_vocab_size"]), tokens)
        except FileNotFoundError:
            raise StageError(
                f"{path}: missing, but the recipe sets tokenizer.extend; re-run `pretrain tokenizer RECIPE --force`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StageError(
                f"{path}: unreadable ({exc}); re-run `pretrain tokenizer RECIPE --force`"
            ) from None

    def summary(self) -> dict:
        """The tokenizer report's `extension` entry (and the model card's line)."""
        return {
            "parent": self.parent,
            "parent_vocab_size": self.parent_vocab_size,
            "added_tokens": len(self.tokens),
            "learnt": self.count("learnt"),
            "listed": self.count("listed"),
        }


def listed_token_problems(parent: PreTrainedTokenizerFast, tokens: list[str], parent_name: str) -> list[str]:
    """`tokenizer.extend.tokens.N: ...` for each listed token the parent already has (as a vocabulary entry,
    or as the single token it encodes the text to). A token listed twice is the recipe schema's error
    (`config.tokenizer.TokenizerExtension`)."""
    vocab = parent.backend_tokenizer.get_vocab(with_added_tokens=True)
    problems = []
    for i, token in enumerate(tokens):
        key = f"tokenizer.extend.tokens.{i}"
        ids = parent(token, add_special_tokens=False)["input_ids"]
        if not ids:
            problems.append(f"{key}: {token!r}: the parent tokenizer ({parent_name}) encodes it to no tokens")
        elif token in vocab or len(ids) == 1:
            existing = vocab.get(token, ids[0] if len(ids) == 1 else None)
            problems.append(
                f"{key}: {token!r} collides with token {existing} of the parent tokenizer ({parent_name}); "
                "remove it from the list"
            )
    return problems


def new_token_collisions(existing: set[str], new: list[str]) -> list[str]:
    """The new token strings that the parent already has or that occur twice among the new ones."""
    seen: set[str] = set()
    clashes = []
    for token in new:
        if token in existing or token in seen:
            clashes.append(token)
        seen.add(token)
    return clashes


def _bpe_model(parent: PreTrainedTokenizerFast, parent_name: str) -> dict:
    """The parent's tokenizer.json as a dict, after checking its model is a BPE the extension can continue."""
    data = json.loads(parent.backend_tokenizer.to_str())
    model = data["model"]
    if model.get("type") != "BPE":
        raise PretrainError(
            f"tokenizer.extend: the parent tokenizer ({parent_name}) is a {model.get('type')} model; new tokens "
            "can only be learnt for BPE tokenizers (list them in tokenizer.extend.tokens, with new_tokens: 0)"
        )
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise PretrainError(
            f"tokenizer.extend: the parent tokenizer ({parent_name}) is a BPE with dropout or sub-word "
            "prefixes/suffixes, which new merges cannot continue; list tokens in tokenizer.extend.tokens instead"
        )
    return data


def extend_tokenizer(
    parent: PreTrainedTokenizerFast,
    texts: list[str],
    extension: TokenizerExtension,
    min_frequency: int,
    parent_name: str,
) -> tuple[PreTrainedTokenizerFast, TokenizerExtensionRecord]:
    """The parent with `extension.new_tokens` learnt tokens (merges appended) and the listed tokens (added
    tokens) after its ids, and the record of them. Collisions are `PretrainError`s raised before learning."""
    problems = listed_token_problems(parent, extension.tokens, parent_name)
    if problems:
        raise PretrainError("; ".join(problems))
    data = _bpe_model(parent, parent_name) if extension.new_tokens else None
    backend = parent.backend_tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    base = max(vocab.values()) + 1
    added_ids = set(parent.added_tokens_decoder)
    learnt: list[NewToken] = []
    extended = parent
    if data is not None:
        model = data["model"]
        id_to_token = {i: s for s, i in model["vocab"].items()}
        excluded = added_ids | {i for i, s in id_to_token.items() if BYTE_FALLBACK.match(s)}
        if model.get("unk_token") in model["vocab"]:
            excluded.add(model["vocab"][model["unk_token"]])
        merges = learn_merges(
            backend, texts, extension.new_tokens, min_frequency, base, id_to_token, set(vocab), excluded
        )
        for left, right, new, token in merges:
            model["vocab"][token] = new
            model["merges"].append([left, right] if _pair_lists(model["merges"]) else f"{left} {right}")
        clashes = new_token_collisions(set(vocab), [token for *_, token in merges])
        if clashes:  # learning never produces these; a guard against a tokenizer.json it misread
            raise PretrainError(
                f"tokenizer.extend.new_tokens: learnt tokens {clashes[:5]} collide with the parent tokenizer "
                f"({parent_name}) or with each other; report this with the parent's tokenizer.json"
            )
        parent_model = backend.model
        learnt = [
            NewToken(new, token, "learnt", tuple(t.id for t in parent_model.tokenize(token)))
            for _, _, new, token in merges
        ]
        extended = _reload(parent, json.dumps(data, ensure_ascii=False))
    listed = []
    if extension.tokens:
        extended.add_tokens(list(extension.tokens))
        for token in extension.tokens:
            ids = tuple(parent(token, add_special_tokens=False)["input_ids"])
            listed.append(NewToken(extended.convert_tokens_to_ids(token), token, "listed", ids))
    record = TokenizerExtensionRecord(parent_name, base, tuple(learnt + listed))
    expected = list(range(base, base + len(record.tokens)))
    if [t.id for t in record.tokens] != expected or len(extended) != record.vocab_size:
        raise StageError(
            f"tokenizer.extend: the extended tokenizer's new ids are not {base}..{record.vocab_size - 1} after "
            f"the parent's ({parent_name}); the parent's ids are not contiguous, so it cannot be extended"
        )
    return extended, record


def _pair_lists(merges: list) -> bool:
    """tokenizers >= 0.20 writes merges as [left, right] pairs; older files as "left right" strings."""
    return not merges or isinstance(merges[0], list)


def _reload(parent: PreTrainedTokenizerFast, tokenizer_json: str) -> PreTrainedTokenizerFast:
    """The parent's tokenizer folder with `tokenizer_json` in place of its tokenizer.json, loaded the way a user
    loads it (so slow-tokenizer files and the tokenizer class are regenerated from the new model on save)."""
    with tempfile.TemporaryDirectory(prefix="tokenizer-extend-") as tmp:
        parent.save_pretrained(tmp)
        (Path(tmp) / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        extended = AutoTokenizer.from_pretrained(tmp, trust_remote_code=False)
    extended.name_or_path = parent.name_or_path
    return extended
