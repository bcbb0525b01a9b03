"""The built-in `fashion-mnist` and `nmnist` datasets: prepared once into the cache by the `snnctl data`
pipeline, reused afterwards, prepared again when a source file changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from snnctl.data import load_dataset
from tests.conftest import error_lines
from tests.test_data import write_events, write_idx


def fashion_like(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """Small gzip IDX files under the names Fashion-MNIST ships with."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    return root


def nmnist_like(src: Path) -> Path:
    """Six three-event recordings (four train, two test) laid out as the N-MNIST subset ships."""
    (src / "events").mkdir(parents=True)
    for i in range(1, 7):
        write_events(src / "events" / f"{i}.bs2", [(1, 2, 1, 1000), (3, 4, 0, 100_000), (5, 6, 1, 200_000 + i)])
    (src / "train1K.txt").write_text("#sample #class\n1\t0\n2\t1\n3\t0\n4\t1\n")
    (src / "test100.txt").write_text("5\t0\n6\t1\n")
    return src


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
    src = nmnist_like(tmp_path / "nm")
    ds = load_dataset("nmnist", path=str(src), T=4)
    assert ds.x_train.shape == (4, 4, 2, 34, 34) and ds.x_test.shape[:2] == (2, 4)
    assert float(ds.x_train.sum()) == 4 * 3  # every event lands in exactly one frame
    assert load_dataset("nmnist", path=str(src), T=2).x_train.shape[1] == 2


def test_the_nmnist_recipe_trains_on_event_frames_and_refuses_a_time_axis_it_was_not_given(
        tmp_path: Path, monkeypatch, cli):
    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    src = nmnist_like(tmp_path / "nm")
    common = ["train", "--recipe", "nmnist-snn", "--set", "train.epochs=1", "--set", "train.batch_size=2",
              "--set", f"data.options.path={src}", "--set", "data.options.T=4", "--set", "model.config.channels=[4, 8]"]
    done = cli(*common, "--set", "encoding.T=4", "--out", tmp_path / "ok", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["test_samples"] == 2 and (tmp_path / "ok" / "model.safetensors").is_file()
    refused = cli(*common, "--set", "encoding.T=2", "--out", tmp_path / "bad")
    assert refused.code == 2 and not (tmp_path / "bad").exists()
    [line] = error_lines(refused.err)
    assert "frames" in line and "T=2" in line and "data.options.T" in line
