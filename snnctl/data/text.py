"""Word-level tokenizers for text classifiers, in Hugging Face `tokenizers` format (tokenizer.json).

The rule: lower-case, split on whitespace, then runs of [a-z0-9'] and every other character alone.
Ids: 0 is padding, 1 unknown, then the vocabulary. A text classifier's bundle keeps its tokenizer
beside the weights (as a language model's does), so raw text is encoded as in training, and a
dataset encoded with another tokenizer is told apart by the file's SHA-256 (`fingerprint`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from snnctl.errors import UserError

PAD, UNK = "[PAD]", "[UNK]"
FILENAME = "tokenizer.json"
WORD = r"[a-z0-9']+|[^\sa-z0-9']"  # what a word is, after lower-casing and splitting on whitespace


def word_tokenizer(words: dict[str, int]) -> Tokenizer:
    """A WordLevel tokenizer over `words` (ids from 2) that splits text by the rule above."""
    vocab = {PAD: 0, UNK: 1, **words}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD), behavior="isolated")]
    )
    return tok


def read_tokenizer(path: Path) -> Tokenizer:
    """A tokenizer.json given by the user; it must pad with id 0, as every text model here does."""
    if not path.is_file():
        raise UserError("no such tokenizer file", where=str(path), hint="give a tokenizer.json")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception subclass for every parse failure
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read the tokenizer ({first})", where=str(path)) from None
    if tok.id_to_token(0) not in (PAD, "<pad>", "<|pad|>"):
        raise UserError(f"the tokenizer's id 0 is {tok.id_to_token(0)!r}, not a padding token", where=str(path),
                        hint="text models pad with id 0: use a tokenizer whose [PAD] is id 0 (BERT's is)")
    return tok


def encode(tok: Tokenizer, texts: Sequence[str], length: int) -> torch.Tensor:
    """Ids `[N, length]`, right-padded with 0; longer texts are cut to their first `length` tokens."""
    fixed = Tokenizer.from_str(tok.to_str())  # padding and truncation are this call's, not the file's
    fixed.enable_truncation(length)
    fixed.enable_padding(length=length, pad_id=0, pad_token=tok.id_to_token(0) or PAD)
    rows = [enc.ids for enc in fixed.encode_batch(list(texts))]
    return torch.tensor(rows, dtype=torch.long) if rows else torch.zeros(0, length, dtype=torch.long)


def fingerprint(tok: Tokenizer) -> str:
    """SHA-256 of the tokenizer's JSON, as a language model's teacher check takes it."""
    return hashlib.sha256(tok.to_str().encode("utf-8")).hexdigest()


def largest_id(tok: Tokenizer) -> int:
    return max(tok.get_vocab(with_added_tokens=True).values(), default=-1)


def check_fits(tok: Tokenizer, vocab_size: int | None, where: str) -> None:
    """Every id the tokenizer gives must have a row in the model's embedding."""
    if vocab_size is not None and largest_id(tok) >= vocab_size:
        raise UserError(f"the tokenizer gives ids up to {largest_id(tok)} but the model embeds {vocab_size}",
                        where=where, hint="use the tokenizer.json the model was trained with")


def check_same(bundle_tok: Tokenizer | None, data_tokenizer_json: str | None, where: str) -> None:
    """A dataset must be encoded with the bundle's own tokenizer (either side may have none: then
    there is nothing to compare)."""
    if bundle_tok is None or data_tokenizer_json is None:
        return
    data_tok = Tokenizer.from_str(data_tokenizer_json)
    if fingerprint(bundle_tok) != fingerprint(data_tok):
        raise UserError(
            f"the data is encoded with another tokenizer ({data_tok.get_vocab_size()} tokens) than the bundle's "
            f"({bundle_tok.get_vocab_size()} tokens)", where=where,
            hint=f"load the data with the bundle's tokenizer: data option tokenizer = BUNDLE/{FILENAME}",
        )


def open_bundle_tokenizer(folder: Path, name: str | None, sha256: str | None,
                          vocab_size: int | None) -> Tokenizer | None:
    """The tokenizer a bundle keeps (None if it keeps none): it must be the file the model was trained
    with (the manifest's SHA-256) and give no id past the model's embedding."""
    if name is None:
        return None
    path = folder / name
    if not path.is_file():
        raise UserError(f"{name} is missing", where=str(folder),
                        hint="a text model's bundle keeps the tokenizer it was trained with")
    tok = read_tokenizer(path)
    if sha256 is not None and fingerprint(tok) != sha256:
        raise UserError("the tokenizer is not the one the model was trained with (its SHA-256 differs from the "
                        "manifest's)", where=str(path), hint="put back the tokenizer.json the model was trained with")
    check_fits(tok, vocab_size, str(path))
    return tok


def bundle_tokenizer(folder: Path, name: str | None) -> Tokenizer | None:
    """The tokenizer a loaded bundle keeps, if it keeps one (its loader has checked the file)."""
    return None if name is None else read_tokenizer(Path(folder) / name)
