"""SST-2 sentiment (GLUE re-split, ../shared/data/sst2): sentences as padded token-id tensors.

The default tokenizer is word-level (snnctl.data.text), its vocabulary the training split's most
frequent words (ties alphabetical), so it is the same on every machine; `tokenizer` gives a
tokenizer.json instead (a BERT checkpoint's, say). Id 0 is padding, 1 unknown. Sentences longer
than `length` tokens are cut to their first `length` (at 48, 3 of dev's 6,735 are; the longest has 53).
`info` carries the tokenizer (a bundle saves it) and `test_subsets["long"]`, the dev sentences of at
least 10 words (split on whitespace), where word order matters most.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import torch

from snnctl.data import Dataset, find_shared
from snnctl.data import text as T
from snnctl.errors import UserError

WORD = re.compile(T.WORD)
LONG_WORDS = 10


def find_folder(path: str | None) -> Path:
    return find_shared("sst2", ("train.tsv", "dev.tsv"), path)


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = int(bool(rows) and rows[0][:2] == ["sentence", "label"])
    body = rows[header:]
    for i, r in enumerate(body):
        if len(r) < 2 or not r[1].strip().isdigit():
            raise UserError(f"row {i + 1}: expected a sentence, a tab and an integer label", where=str(path))
        if not r[0].strip():
            raise UserError(f"the sentence in row {i + 1} is empty", where=str(path),
                            hint="remove empty sentences from the file, or fill them in")
    return [r[0] for r in body], [int(r[1]) for r in body]


def tokens(text: str) -> list[str]:
    """The words of `text` by the tokenizer's rule (`tests` check both agree on all of SST-2)."""
    return WORD.findall(text.lower())


def encode(texts: list[str], vocab: dict[str, int], length: int) -> torch.Tensor:
    return T.encode(T.word_tokenizer(vocab), texts, length)


def build_vocab(texts: list[str], vocab_size: int) -> dict[str, int]:
    """The `vocab_size - 2` most frequent words of `texts` (ties alphabetical), ids from 2."""
    counts = Counter(w for text in texts for w in tokens(text))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - 2]
    return {w: i + 2 for i, w in enumerate(words)}


def load(
    test_fraction: float = 0.2, split_seed: int = 0, path: str | None = None, vocab_size: int = 16384,
    length: int = 48, train_limit: int | None = None, tokenizer: str | None = None,
) -> Dataset:
    """Train on train.tsv, test on dev.tsv (the given split; test_fraction/split_seed do not apply).
    With `tokenizer` (a tokenizer.json), `vocab_size` is the tokenizer's."""
    folder = find_folder(path)
    x_text, y = read_tsv(folder / "train.tsv")
    t_text, t_y = read_tsv(folder / "dev.tsv")
    if train_limit:
        x_text, y = x_text[:train_limit], y[:train_limit]
    if tokenizer:
        tok = T.read_tokenizer(Path(tokenizer))
        vocab_size = tok.get_vocab_size()
    else:
        tok = T.word_tokenizer(build_vocab(x_text, vocab_size))
    long = torch.tensor([len(t.split()) >= LONG_WORDS for t in t_text], dtype=torch.bool)
    return Dataset(
        name="sst2", x_train=T.encode(tok, x_text, length), y_train=torch.tensor(y),
        x_test=T.encode(tok, t_text, length), y_test=torch.tensor(t_y), num_classes=2,
        info={"vocab_size": vocab_size, "length": length, "tokenizer_json": tok.to_str(),
              "test_subsets": {"long": long}},
    )
