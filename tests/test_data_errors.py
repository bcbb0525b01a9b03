"""Bad input to `snnctl data prepare` and to prepared datasets: exit 2, one line naming the file and what
was expected, and nothing half-written."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from snnctl.data.prepared import MANIFEST
from tests.conftest import error_lines
from tests.test_data import cifar_python, idx_folder, no_leftovers, write_idx


class Remove:
    """Unpickling this would delete a file: the restricted unpickler must refuse before that."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def __reduce__(self) -> tuple[Callable[..., None], tuple[str]]:
        return os.remove, (str(self.victim),)


def truncated_idx(tmp: Path) -> tuple[Path, list[str], list[str]]:
    src = idx_folder(tmp / "src")
    path = src / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    return src, [], [str(path), "truncated IDX file"]


def wrong_magic(tmp: Path) -> tuple[Path, list[str], list[str]]:
    src = idx_folder(tmp / "src")
    path = src / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0d\x01" + path.read_bytes()[4:])
    return src, [], [str(path), "magic 00000d01", "expected 0000080N"]


def csv_without_column(tmp: Path) -> tuple[Path, list[str], list[str]]:
    path = tmp / "rows.csv"
    path.write_text("text,label\nhello,1\nworld,0\n")
    return path, ["--label-column", "stars"], [str(path), "no column 'stars'", "columns: text, label"]


def labels_not_integers(tmp: Path) -> tuple[Path, list[str], list[str]]:
    path = tmp / "rows.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "pos"}\n')
    return path, [], [str(path), "label 'pos' in row 2 is not a non-negative integer"]


def imagefolder_without_classes(tmp: Path) -> tuple[Path, list[str], list[str]]:
    (tmp / "img" / "empty-class").mkdir(parents=True)
    (tmp / "img" / "notes.txt").write_text("no images here")
    return tmp / "img", ["--format", "imagefolder"], [str(tmp / "img"), "no classes"]


def empty_file(tmp: Path) -> tuple[Path, list[str], list[str]]:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return path, [], [str(path), "empty file, expected csv data"]


def empty_idx(tmp: Path) -> tuple[Path, list[str], list[str]]:
    path = tmp / "train-images-idx3-ubyte"
    path.write_bytes(b"")
    return path, [], [str(path), "empty file, expected an IDX file"]


def cifar_with_code(tmp: Path) -> tuple[Path, list[str], list[str]]:
    src = cifar_python(tmp / "cifar")
    victim = tmp / "victim"
    victim.write_text("still here")
    (src / "data_batch_1").write_bytes(pickle.dumps({b"data": Remove(victim), b"labels": [0]}, protocol=2))
    return src, [], [str(src / "data_batch_1"), "CIFAR pickle holds posix.remove", "expected only arrays"]


def unknown_format(tmp: Path) -> tuple[Path, list[str], list[str]]:
    return idx_folder(tmp / "src"), ["--format", "matlab"], ["--format", "unknown format 'matlab'", "one of idx"]


def bad_event_file(tmp: Path) -> tuple[Path, list[str], list[str]]:
    (tmp / "nm" / "events").mkdir(parents=True)
    (tmp / "nm" / "events" / "1.bs2").write_bytes(b"\x01\x02\x03\x04\x05\x06")
    (tmp / "nm" / "train.txt").write_text("1\t0\n")
    return tmp / "nm", [], [str(tmp / "nm" / "events" / "1.bs2"), "6 bytes is not a whole number of 5-byte"]


CASES = [truncated_idx, wrong_magic, csv_without_column, labels_not_integers, imagefolder_without_classes, empty_file,
         empty_idx, cifar_with_code, unknown_format, bad_event_file]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_source_is_one_line_and_writes_nothing(cli, tmp_path: Path, case):
    source, flags, expected = case(tmp_path)
    out = tmp_path / "out"
    r = cli("data", "prepare", source, "--out", out, *flags)
    assert r.code == 2, r.err
    lines = error_lines(r.err.split("\n", 1)[1] if r.err.startswith("prepare") else r.err)
    assert len(lines) == 1 and lines[0].startswith("snnctl: error: "), r.err
    for text in expected:
        assert text in lines[0]
    assert not out.exists() and no_leftovers(tmp_path)
    if case is cifar_with_code:
        assert (tmp_path / "victim").read_text() == "still here"


def test_out_that_is_not_a_prepared_dataset_is_refused(cli, tmp_path: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("my file")
    r = cli("data", "prepare", idx_folder(tmp_path / "src"), "--out", out)
    assert r.code == 2 and f"{out}: exists and is not a prepared dataset" in r.err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.fixture
def prepared(cli, tmp_path: Path) -> tuple[Path, Path]:
    src = idx_folder(tmp_path / "src")
    assert cli("data", "prepare", src, "--out", tmp_path / "p").code == 0
    return src, tmp_path / "p"


def test_tampered_manifest_is_refused(cli, prepared: tuple[Path, Path]):
    _, folder = prepared
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["counts"]["train"]["0"] += 1
    (folder / MANIFEST).write_text(json.dumps(manifest))
    r = cli("data", "show", folder)
    assert r.code == 2 and len(error_lines(r.err)) == 1
    assert f"{folder / MANIFEST}: manifest was modified after prepare" in r.err


def test_tampered_data_file_is_refused_everywhere(cli, prepared: tuple[Path, Path], tmp_path: Path):
    _, folder = prepared
    arrow = next((folder / "hf" / "train").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[-100] ^= 0xFF
    arrow.write_bytes(bytes(data))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'task = "classify"\n[model]\nname = "mlp"\nkind = "ann"\n[data]\nname = "{folder}"\n')
    for args in (("data", "show", folder), ("train", "--recipe", recipe, "--out", tmp_path / "run")):
        r = cli(*args)
        assert r.code == 2 and len(error_lines(r.err)) == 1, r.err
        assert f"{arrow}: data file was modified after prepare (sha256 mismatch)" in r.err
    assert not (tmp_path / "run").exists()


def test_changed_source_is_detected_when_used(cli, prepared: tuple[Path, Path]):
    src, folder = prepared
    labels = src / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.zeros(10, np.uint8))
    r = cli("data", "show", folder)
    assert r.code == 2 and f"{labels}: source file changed since the dataset was prepared" in r.err
    assert "data prepare" in r.err
    labels.unlink()  # once the source is gone, the prepared copy stands on its own
    for p in src.iterdir():
        p.unlink()
    assert cli("data", "show", folder, "--json").code == 0


def test_a_path_that_is_not_a_prepared_dataset(cli, tmp_path: Path):
    (tmp_path / "plain").mkdir()
    r = cli("data", "show", tmp_path / "plain")
    assert r.code == 2 and f"{tmp_path / 'plain'}: not a prepared dataset" in r.err
