"""`snnctl data prepare | show | list` on small files written here in each source format, and the
prepared folder read back through the one dataset loader."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from snnctl.data import load_dataset
from snnctl.data.prepared import MANIFEST
from snnctl.errors import UserError
from tests.conftest import error_lines

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_idx(path: Path, arr: np.ndarray) -> Path:
    """An IDX file of unsigned bytes (gzip when the name ends in .gz)."""
    head = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(body, mtime=0) if path.suffix == ".gz" else body)
    return path


def idx_folder(root: Path, n_train: int = 20, n_test: int = 10, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, gz in (("train", n_train, ".gz"), ("t10k", n_test, "")):
        labels = np.arange(n) % 3
        images = rng.integers(0, 256, (n, size, size))
        images[:, 0, 0] = labels * 100  # a pixel that says the class, so the pairing can be checked
        write_idx(root / f"{prefix}-images-idx3-ubyte{gz}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{gz}", labels)
    return root


def no_leftovers(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


def test_idx_prepares_loads_and_fingerprints_repeat(cli, tmp_path: Path):
    src = idx_folder(tmp_path / "src")
    r = cli("data", "prepare", src, "--out", tmp_path / "a", "--json")
    assert r.code == 0, r.err
    manifest = json.loads(r.out)
    assert manifest["format"] == "idx" and manifest["split"] == {"rule": "given by the source"}
    assert manifest["counts"]["test"] == {"0": 4, "1": 3, "2": 3}
    assert manifest["features"]["x"] == {"shape": [1, 8, 8], "dtype": "uint8"}
    assert {s["name"] for s in manifest["sources"]} == {p.name for p in src.iterdir()}
    assert cli("data", "prepare", src, "--out", tmp_path / "b").code == 0
    again = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert again["fingerprint"] == manifest["fingerprint"]
    ds = load_dataset(str(tmp_path / "a"))
    assert ds.x_train.shape == (20, 1, 8, 8) and ds.num_classes == 3
    assert (ds.x_train[:, 0, 0, 0] * 255).round().tolist() == (ds.y_train * 100).float().tolist()
    assert float(ds.x_train.max()) <= 1.0
    assert no_leftovers(tmp_path)


def test_prepare_replaces_a_prepared_dataset_and_show_and_list_it(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    src = idx_folder(tmp_path / "src")
    out = tmp_path / "home" / "datasets" / "tiny"
    assert cli("data", "prepare", src, "--out", out, "--name", "tiny").code == 0
    assert cli("data", "prepare", src, "--out", out, "--name", "tiny").code == 0  # replaced in place
    r = cli("data", "show", "tiny", "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["splits"]["train"]["examples"] == 20 and summary["x"]["shape"] == [1, 8, 8]
    assert summary["x"]["min"] >= 0 and summary["x"]["max"] <= 1
    assert Path(summary["picture"]).is_file() and Path(summary["picture"]).read_bytes()[:4] == b"\x89PNG"
    other = tmp_path / "more"
    assert cli("data", "prepare", src, "--out", other / "second").code == 0
    listed = json.loads(cli("data", "list", other, "--json").out)
    prepared = {r["name"]: r for r in listed if r["kind"] == "prepared"}
    assert set(prepared) == {"tiny", "second"} and prepared["tiny"]["examples"] == {"train": 20, "test": 10}
    assert {"digits", "sst2"} <= {r["name"] for r in listed if r["kind"] == "built-in"}
    assert no_leftovers(out.parent)


def test_imagefolder_split_is_stratified_and_seeded(cli, tmp_path: Path):
    from PIL import Image

    for c, name in enumerate(("cat", "dog")):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((6, 5, 3), 40 * c + i, np.uint8)).save(tmp_path / "img" / name / f"{i}.png")
    runs = []
    for out in ("a", "b"):
        r = cli("data", "prepare", tmp_path / "img", "--out", tmp_path / out, "--test-fraction", "0.4", "--seed", "3",
                "--json")
        assert r.code == 0, r.err
        runs.append(json.loads(r.out))
    assert runs[0]["counts"]["test"] == {"cat": 4, "dog": 4}
    assert runs[0]["split"] == {"rule": "stratified", "test_fraction": 0.4, "seed": 3}
    assert runs[0]["fingerprint"] == runs[1]["fingerprint"]
    ds = load_dataset(str(tmp_path / "a"))
    assert ds.x_train.shape == (12, 3, 6, 5)
    assert load_dataset(str(tmp_path / "b")).x_test.equal(ds.x_test)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_tabular_text_becomes_word_ids(cli, tmp_path: Path, fmt: str):
    rows = [{"body": f"{'good great' if i % 2 else 'bad awful'} film {i}", "stars": i % 2} for i in range(30)]
    path = tmp_path / f"reviews.{fmt}"
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        path.write_text("body" + sep + "stars\n" + "".join(f"{r['body']}{sep}{r['stars']}\n" for r in rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    r = cli("data", "prepare", path, "--out", tmp_path / "p", "--text-column", "body", "--label-column", "stars",
            "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["counts"] == {"train": {"0": 12, "1": 12}, "test": {"0": 3, "1": 3}}
    ds = load_dataset(str(tmp_path / "p"), length=6)
    assert ds.x_train.shape == (24, 6) and not ds.x_train.is_floating_point()
    assert ds.info["vocab_size"] == 16384 and ds.num_classes == 2
    shown = json.loads(cli("data", "show", tmp_path / "p", "--json").out)
    assert shown["words"]["min"] == shown["words"]["max"] == 4 and len(shown["examples"]) == 3
    assert shown["picture"] is None


def test_unlabelled_text_is_prepared_but_not_a_classification_set(cli, tmp_path: Path):
    (tmp_path / "lines.txt").write_text("".join(f"line {i}\n" for i in range(10)))
    assert cli("data", "prepare", tmp_path / "lines.txt", "--out", tmp_path / "t").code == 0
    with pytest.raises(UserError, match="no labels"):
        load_dataset(str(tmp_path / "t"))
    r = cli("data", "show", tmp_path / "t", "--json")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert shown["examples"][0]["label"] is None and shown["examples"][0]["text"].startswith("line ")
    assert sum(s["examples"] for s in shown["splits"].values()) == 10 and shown["words"]["max"] == 2


def cifar_python(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in ("data_batch_1", "test_batch"):
        batch = {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return root


def test_cifar_python_and_binary_batches(cli, tmp_path: Path):
    src = cifar_python(tmp_path / "py")
    r = cli("data", "prepare", src, "--out", tmp_path / "a", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["classes"][:2] == ["airplane", "automobile"]
    ds = load_dataset(str(tmp_path / "a"))
    raw = pickle.loads((src / "data_batch_1").read_bytes())[b"data"]  # our own file, written just above
    assert ds.x_train.shape == (6, 3, 32, 32)
    assert (ds.x_train[1] * 255).round().flatten().tolist() == raw[1].astype(float).tolist()
    (tmp_path / "bin").mkdir()
    for name, n in (("data_batch_1.bin", 4), ("test_batch.bin", 2)):
        recs = np.concatenate([np.full((n, 1), 7, np.uint8), np.full((n, 3072), 9, np.uint8)], axis=1)
        (tmp_path / "bin" / name).write_bytes(recs.tobytes())
    assert cli("data", "prepare", tmp_path / "bin", "--out", tmp_path / "b", "--format", "cifar").code == 0
    ds = load_dataset(str(tmp_path / "b"))
    assert ds.y_train.tolist() == [7] * 4 and ds.x_test.shape == (2, 3, 32, 32)


def write_events(path: Path, events: list[tuple[int, int, int, int]]) -> None:
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(bytes(out))


def test_nmnist_frames_and_raw_events(cli, tmp_path: Path):
    src = tmp_path / "nm"
    (src / "events").mkdir(parents=True)
    for i in range(1, 5):
        write_events(src / "events" / f"{i}.bs2", [(1, 2, 1, 0), (3, 4, 0, 500), (5, 6, 1, 1000 * i)])
    (src / "train.txt").write_text("#sample #class\n1\t0\n2\t1\n3\t0\n")
    (src / "test.txt").write_text("4\t1\n")
    r = cli("data", "prepare", src, "--out", tmp_path / "f", "--T", "2", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["info"]["T"] == 2
    ds = load_dataset(str(tmp_path / "f"))
    assert ds.x_train.shape == (3, 2, 2, 34, 34)
    assert ds.x_train[0, 0, 1, 2, 1] == 1 and ds.x_train[0, 1, 1, 6, 5] == 1 and float(ds.x_train.sum()) == 9
    assert cli("data", "prepare", src, "--out", tmp_path / "r", "--events", "raw").code == 0
    assert load_dataset(str(tmp_path / "r"), T=5).x_test.shape == (1, 5, 2, 34, 34)
    shown = json.loads(cli("data", "show", tmp_path / "f", "--json").out)
    assert shown["modality"] == "events" and Path(shown["picture"]).is_file()


def test_real_nmnist_files(cli, tmp_path: Path):
    shared = SHARED / "nmnist_small"
    if not shared.is_dir():
        pytest.skip("../shared/data/nmnist_small is not here")
    (tmp_path / "nm" / "events").mkdir(parents=True)
    train = [ln for ln in (shared / "train1K.txt").read_text().splitlines() if not ln.startswith("#")][:6]
    test = [ln for ln in (shared / "test100.txt").read_text().splitlines() if not ln.startswith("#")][:2]
    for line in train + test:
        shutil.copy(shared / "events" / f"{line.split()[0]}.bs2", tmp_path / "nm" / "events")
    (tmp_path / "nm" / "train1K.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "nm" / "test100.txt").write_text("\n".join(test) + "\n")
    assert cli("data", "prepare", tmp_path / "nm", "--out", tmp_path / "p", "--T", "4").code == 0
    ds = load_dataset(str(tmp_path / "p"))
    assert ds.x_train.shape == (6, 4, 2, 34, 34) and ds.y_train.tolist() == [int(ln.split()[1]) for ln in train]
    assert float(ds.x_train[0].sum()) > 1000  # a 300 ms saccade holds thousands of events


def test_hf_save_to_disk_and_local_data_folder(cli, tmp_path: Path):
    import datasets
    from PIL import Image

    text = datasets.Dataset.from_dict({"sentence": ["a b", "c d e", "f", "g h"] * 3, "label": [0, 1, 0, 1] * 3})
    datasets.DatasetDict({"train": text, "validation": text.select(range(4))}).save_to_disk(str(tmp_path / "saved"))
    r = cli("data", "prepare", tmp_path / "saved", "--out", tmp_path / "a", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["counts"]["test"] == {"0": 2, "1": 2}
    assert load_dataset(str(tmp_path / "a")).x_train.shape == (12, 48)
    images = datasets.Dataset.from_dict({"image": [Image.fromarray(np.full((4, 4), i, np.uint8)) for i in range(8)],
                                         "label": [0, 1] * 4}).cast_column("image", datasets.Image())
    (tmp_path / "pq").mkdir()
    images.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    r = cli("data", "prepare", tmp_path / "pq", "--format", "hf", "--out", tmp_path / "b", "--test-fraction", "0.5")
    assert r.code == 0, r.err
    assert load_dataset(str(tmp_path / "b")).x_train.shape == (4, 1, 4, 4)


def test_a_prepared_folder_trains_benches_converts_and_a_misfit_says_both_shapes(cli, tmp_path: Path):
    src = idx_folder(tmp_path / "src", n_train=40, n_test=12)
    data = tmp_path / "tiny"
    assert cli("data", "prepare", src, "--out", data).code == 0
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f'task = "classify"\n[model]\nname = "mlp"\nkind = "ann"\nconfig = {{ hidden = [16] }}\n'
                      f'[data]\nname = "{data}"\n[train]\nepochs = 1\nbatch_size = 16\n')
    r = cli("train", "--recipe", recipe, "--out", tmp_path / "run")
    assert r.code == 0, r.err
    r = cli("bench", tmp_path / "run", "--dataset", data, "--latency-samples", "2", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["model"]["dataset"] == "tiny" and json.loads(r.out)["model"]["test_samples"] == 12
    r = cli("convert", tmp_path / "run", "--dataset", data, "--T", "2", "--out", tmp_path / "conv", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["test_samples"] == 12
    r = cli("train", "--recipe", recipe, "--set", "model.config.in_features=50", "--out", tmp_path / "bad")
    assert r.code == 2 and len(error_lines(r.err)) == 1
    assert "50 features" in r.err and "(1, 8, 8)" in r.err
    assert not (tmp_path / "bad").exists()


def test_real_fashion_mnist(cli, tmp_path: Path):
    src = SHARED / "fashion_mnist"
    if not src.is_dir():
        pytest.skip("../shared/data/fashion_mnist is not here")
    r = cli("data", "prepare", src, "--out", tmp_path / "fm", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["counts"]["test"] == {str(c): 1000 for c in range(10)}
    ds = load_dataset(str(tmp_path / "fm"))
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert abs(float(ds.x_train.mean()) - 0.2860) < 1e-3  # Fashion-MNIST's well-known pixel mean
