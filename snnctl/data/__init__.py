"""Datasets (found through the `snnctl.datasets` entry points) and spike encoders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from snnctl import registry
from snnctl.errors import UserError


@dataclass(frozen=True)
class Dataset:
    """An in-memory classification dataset with a fixed train/test split."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)  # e.g. vocab_size for text

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_as_recorded(name: str, recorded: dict[str, Any] | None) -> Dataset:
    """Load `name` with the split and options a recipe's [data] section recorded for it, when it is
    the same dataset; with its defaults otherwise."""
    if recorded and recorded.get("name") == name:
        split = {k: recorded[k] for k in ("test_fraction", "split_seed") if k in recorded}
        return load_dataset(name, **split, **(recorded.get("options") or {}))
    return load_dataset(name)


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a registered dataset; bad options are a user error naming the dataset."""
    loader = registry.load("datasets", name)
    try:
        return loader(**options)
    except TypeError as err:
        raise UserError(f"dataset '{name}': {err}", hint="check [data] options in the recipe") from None
