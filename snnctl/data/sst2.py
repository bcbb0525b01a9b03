"""SST-2 sentiment (GLUE re-split, ../shared/data/sst2): sentences as padded word-id tensors.

The vocabulary is built from the training split alone (most frequent words, ties alphabetical), so it
is the same on every machine and needs no file beside the bundle; id 0 is padding, 1 unknown.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import torch

from snnctl.data import Dataset, find_shared

WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def find_folder(path: str | None) -> Path:
    return find_shared("sst2", ("train.tsv", "dev.tsv"), path)


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    body = rows[1:] if rows and rows[0][:2] == ["sentence", "label"] else rows
    return [r[0] for r in body], [int(r[1]) for r in body]


def tokens(text: str) -> list[str]:
    return WORD.findall(text.lower())


def encode(texts: list[str], vocab: dict[str, int], length: int) -> torch.Tensor:
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    for i, text in enumerate(texts):
        words = [vocab.get(w, 1) for w in tokens(text)][:length]
        ids[i, : len(words)] = torch.tensor(words, dtype=torch.long)
    return ids


def build_vocab(texts: list[str], vocab_size: int) -> dict[str, int]:
    """The `vocab_size - 2` most frequent words of `texts` (ties alphabetical), ids from 2."""
    counts = Counter(w for text in texts for w in tokens(text))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - 2]
    return {w: i + 2 for i, w in enumerate(words)}


def load(
    test_fraction: float = 0.2, split_seed: int = 0, path: str | None = None, vocab_size: int = 16384,
    length: int = 48, train_limit: int | None = None,
) -> Dataset:
    """Train on train.tsv, test on dev.tsv (the given split; test_fraction/split_seed do not apply)."""
    folder = find_folder(path)
    x_text, y = read_tsv(folder / "train.tsv")
    t_text, t_y = read_tsv(folder / "dev.tsv")
    if train_limit:
        x_text, y = x_text[:train_limit], y[:train_limit]
    vocab = build_vocab(x_text, vocab_size)
    return Dataset(
        name="sst2", x_train=encode(x_text, vocab, length), y_train=torch.tensor(y),
        x_test=encode(t_text, vocab, length), y_test=torch.tensor(t_y), num_classes=2,
        info={"vocab_size": vocab_size, "length": length},
    )
