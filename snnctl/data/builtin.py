"""Built-in datasets whose files are not shipped with a package: Fashion-MNIST (official IDX files) and
N-MNIST (event files), read from the shared data folder (`snnctl.data.find_shared`).

Each is prepared once, by the same `snnctl data prepare` pipeline a user runs, into
SNNCTL_HOME/cache/datasets/NAME, and loaded from there (memory-mapped Arrow) afterwards. A cache whose
source files changed is prepared again; a lock keeps parallel processes (torchrun ranks) from preparing
it twice at once.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from snnctl.data import Dataset, find_shared
from snnctl.errors import UserError

FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")
NMNIST_FILES = ("train1K.txt", "test100.txt")


def cached(name: str, source: Path, fmt: str, **job: object) -> Path:
    """The prepared copy of `source` under the cache, prepared (again) when absent or out of date."""
    from snnctl.data.prepared import PrepareJob, open_prepared, prepare
    from snnctl.settings import load_settings

    folder = load_settings().cache / "datasets" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            open_prepared(folder)
        except UserError:  # absent, from an older snnctl, or its sources changed: the cache is ours to redo
            prepare(PrepareJob(source=str(source), out=folder, format=fmt, name=name, **job))  # type: ignore[arg-type]
    return folder


def fashion_mnist(test_fraction: float | None = None, split_seed: int | None = None, binarize: bool = False,
                  path: str | None = None) -> Dataset:
    """Fashion-MNIST, 60,000 train / 10,000 test 28x28 greyscale images in 10 classes, pixels in [0, 1];
    the official split (`test_fraction`/`split_seed` do not apply). `binarize` thresholds at 0.5 (binary
    inputs, for bit-flip noise)."""
    from snnctl.data.prepared import load_prepared

    folder = cached("fashion-mnist", find_shared("fashion_mnist", FASHION_FILES, path), "idx")
    ds = load_prepared(folder)
    if not binarize:
        return ds
    return Dataset(name=ds.name, x_train=(ds.x_train >= 0.5).float(), y_train=ds.y_train,
                   x_test=(ds.x_test >= 0.5).float(), y_test=ds.y_test, num_classes=ds.num_classes, info=ds.info)


def nmnist(test_fraction: float | None = None, split_seed: int | None = None, T: int = 8,
           path: str | None = None) -> Dataset:
    """The N-MNIST subset in the shared folder (1,000 train / 100 test recordings, 2x34x34 events), kept as
    raw events and binned into `T` frames of event counts when loaded: x is [N, T, 2, 34, 34]."""
    from snnctl.data.prepared import load_prepared

    folder = cached("nmnist", find_shared("nmnist_small", NMNIST_FILES, path), "nmnist", events="raw")
    return load_prepared(folder, T=T)
