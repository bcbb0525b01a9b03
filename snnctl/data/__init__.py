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


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a registered dataset; bad options are a user error naming the dataset."""
    loader = registry.load("datasets", name)
    try:
        return loader(**options)
    except TypeError as err:
        raise UserError(f"dataset '{name}': {err}", hint="check [data] options in the recipe") from None
