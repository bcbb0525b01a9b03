"""Text tokenizers in Hugging Face `tokenizers` format, so a bundle's tokenizer.json opens anywhere.

Two kinds, one file format:
- `byte`: needs no training and no files. Byte b is token id b (GPT-2's byte-to-character map in
  front of a BPE model with no merges), then the special tokens.
- `bpe`: byte-level BPE trained on the training corpus; the same 256 bytes are its alphabet, so any
  text still encodes.

Special tokens mark dialogue turns (`<|user|>`, `<|assistant|>`) and the end of a text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from snnctl.errors import UserError

END = "<|endoftext|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SPECIALS = (END, USER, ASSISTANT)
FILENAME = "tokenizer.json"


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map: printable bytes map to themselves, the
    rest to characters from 256 upwards, so every byte is one visible, non-space character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_tokenizer() -> Tokenizer:
    """The byte tokenizer: id b for byte b (0..255), then SPECIALS from 256."""
    vocab = {char: b for b, char in byte_alphabet().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with `vocab_size` entries (specials included) learnt from `texts`."""
    if vocab_size < 256 + len(SPECIALS):
        raise UserError(f"BPE vocab_size {vocab_size} is below the 256 bytes plus {len(SPECIALS)} special tokens",
                        where="[lm] bpe_vocab", hint="use 512 or more")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def make_tokenizer(kind: str, texts: Iterable[str], bpe_vocab: int) -> Tokenizer:
    if kind == "byte":
        return byte_tokenizer()
    if kind == "bpe":
        return train_bpe(texts, bpe_vocab)
    raise UserError(f"unknown tokenizer '{kind}'", where="[lm] tokenizer", hint="use byte or bpe")


def to_json(tok: Tokenizer) -> bytes:
    return tok.to_str().encode("utf-8")


def load(path: Path) -> Tokenizer:
    """Read a bundle's tokenizer.json; a broken one is a user error naming the file."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception subclass for every parse failure
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot read the tokenizer ({first})", where=str(path)) from None


class StreamDecoder:
    """Turns ids into text as they arrive. A multi-byte character split over several tokens is held
    back until it is complete, so a streamed reply never shows a half character."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.ids: list[int] = []
        self.shown = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece, self.shown = text[len(self.shown):], text
        return piece

    def flush(self) -> str:
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        piece, self.shown = text[len(self.shown):], text
        return piece
