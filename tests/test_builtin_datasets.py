"""The built-in `fashion-mnist` and `nmnist` datasets: prepared once into the cache by the `snnctl data`
pipeline, reused afterwards, prepared again when a source file changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from snnctl.data import load_dataset
from tests.test_data import write_events, write_idx


def fashion_like(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """Small gzip IDX files under the names Fashion-MNIST ships with."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    return root


def test_fashion_mnist_is_prepared_once_reused_and_redone_when_its_source_changes(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    src = fashion_like(tmp_path / "fm")
    ds = load_dataset("fashion-mnist", path=str(src))
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28) and ds.num_classes == 3
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    cache = tmp_path / "home" / "cache" / "datasets" / "fashion-mnist"
    stamp = (cache / "snnctl-dataset.json").stat().st_mtime_ns
    assert load_dataset("fashion-mnist", path=str(src)).y_test.tolist() == ds.y_test.tolist()
    assert (cache / "snnctl-dataset.json").stat().st_mtime_ns == stamp  # reused, not prepared again
    binary = load_dataset("fashion-mnist", path=str(src), binarize=True)
    assert set(torch.unique(binary.x_train).tolist()) <= {0.0, 1.0}
    assert torch.equal(binary.x_train, (ds.x_train >= 0.5).float())
    labels = np.zeros(20, dtype=np.uint8)  # every training label changed to 0
    write_idx(src / "train-labels-idx1-ubyte.gz", labels)
    assert load_dataset("fashion-mnist", path=str(src)).y_train.tolist() == [0] * 20


def test_nmnist_bins_raw_events_into_the_asked_number_of_steps(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    src = tmp_path / "nm"
    (src / "events").mkdir(parents=True)
    for i in range(1, 7):
        write_events(src / "events" / f"{i}.bs2", [(1, 2, 1, 1000), (3, 4, 0, 100_000), (5, 6, 1, 200_000 + i)])
    (src / "train1K.txt").write_text("#sample #class\n1\t0\n2\t1\n3\t0\n4\t1\n")
    (src / "test100.txt").write_text("5\t0\n6\t1\n")
    ds = load_dataset("nmnist", path=str(src), T=4)
    assert ds.x_train.shape == (4, 4, 2, 34, 34) and ds.x_test.shape[:2] == (2, 4)
    assert float(ds.x_train.sum()) == 4 * 3  # every event lands in exactly one frame
    assert load_dataset("nmnist", path=str(src), T=2).x_train.shape[1] == 2
