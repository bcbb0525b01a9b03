"""Datasets (found through the `snnctl.datasets` entry points) and spike encoders."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
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

    @property
    def steps(self) -> int | None:
        """The time steps each example carries itself (binned event frames `[N, T, ...]`), else None."""
        return self.info.get("steps")

    @property
    def step_shape(self) -> tuple[int, ...]:
        """What a model sees at one time step: the input shape without the example's own time axis."""
        return self.input_shape[1:] if self.steps else self.input_shape


def load_as_recorded(name: str, recorded: dict[str, Any] | None) -> Dataset:
    """Load `name` with the split and options a recipe's [data] section recorded for it, when it is
    the same dataset; with its defaults otherwise."""
    if recorded and recorded.get("name") == name:
        split = {k: recorded[k] for k in ("test_fraction", "split_seed") if recorded.get(k) is not None}
        return load_dataset(name, **split, **(recorded.get("options") or {}))
    return load_dataset(name)


def require_classification(ds: Any, name: str) -> Dataset:
    """A classification dataset, or a user error for anything else (a language-model text corpus)."""
    if not isinstance(ds, Dataset):
        raise UserError(f"dataset '{name}' is a {type(ds).__name__}, not a labelled classification dataset",
                        where="--dataset", hint="use a classification dataset (digits, sst2); language models are "
                        "measured by `snnctl chat` and training's validation loss")
    return ds


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a registered dataset, or a folder written by `snnctl data prepare` (any name that is not a
    registered one and is a path); bad options are a user error naming the dataset."""
    if name not in registry.entries("datasets") and (Path(name).is_dir() or os.sep in name):
        from snnctl.data.prepared import load_prepared

        if not Path(name).is_dir():
            raise UserError("no such prepared dataset folder", where=name,
                            hint="make one with `snnctl data prepare SOURCE --out DIR`")
        def loader(**kw: Any) -> Dataset:
            return load_prepared(Path(name), **kw)
    else:
        loader = registry.load("datasets", name)
    try:
        return loader(**options)
    except TypeError as err:
        raise UserError(f"dataset '{name}': {err}", hint="check [data] options in the recipe") from None


def find_shared(name: str, required: tuple[str, ...], path: str | None = None) -> Path:
    """The folder holding a data set's files: an explicit path, else $SNNCTL_DATA_DIR/NAME, else
    ../shared/data/NAME from the working directory or from the repository."""
    candidates = [Path(path)] if path else []
    if os.environ.get("SNNCTL_DATA_DIR"):
        candidates.append(Path(os.environ["SNNCTL_DATA_DIR"]) / name)
    repo = Path(__file__).resolve().parents[2]
    candidates += [Path.cwd().parent / "shared/data" / name, repo.parent / "shared/data" / name]
    for folder in candidates:
        if all((folder / f).is_file() for f in required):
            return folder
    raise UserError(f"{name} not found ({' and '.join(required)})", where=str(candidates[0]) if candidates else None,
                    hint=f"set SNNCTL_DATA_DIR to the folder holding {name}/, or [data.options] path")
