"""The model bundle: round trip, atomic writes, and every way a bundle can be broken."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from snnctl.artifact import MANIFEST, WEIGHTS, load_bundle, make_manifest, save_bundle
from snnctl.errors import UserError
from snnctl.zoo import build_network


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_round_trip_gives_the_same_outputs(trained: dict[str, Path]):
    for kind, path in trained.items():
        bundle = load_bundle(path)
        assert bundle.manifest["kind"] == kind
        x = torch.rand(4, 1, 8, 8)
        again = load_bundle(path)
        assert torch.equal(bundle.model(x), again.model(x))


def test_manifest_records_what_made_the_model(trained: dict[str, Path]):
    m = json.loads((trained["snn"] / MANIFEST).read_text())
    assert m["format_version"] == 2 and m["zoo"]["name"] == "cnn"
    assert m["neuron"]["type"] == "lif" and m["T"] == 4 and m["encoding"] == "direct"
    assert m["recipe"]["name"] == "digits-snn" and m["seed"] == 0 and m["code_version"]
    assert 0 <= m["metrics"]["test_acc"] <= 1
    ann = json.loads((trained["ann"] / MANIFEST).read_text())
    assert ann["neuron"] is None and ann["T"] is None


def test_save_writes_no_temporary_files_and_replaces_in_place(tmp_path: Path):
    net = build_network("mlp", {"hidden": [4]}, kind="ann")
    manifest = make_manifest(zoo_name="mlp", zoo_config={"hidden": [4]}, kind="ann")
    save_bundle(tmp_path, net, manifest)
    save_bundle(tmp_path, net, manifest)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WEIGHTS, MANIFEST]


def test_interrupted_save_leaves_no_manifest_over_other_weights(tmp_path: Path, monkeypatch):
    net = build_network("mlp", {"hidden": [4]}, kind="ann")
    manifest = make_manifest(zoo_name="mlp", zoo_config={"hidden": [4]}, kind="ann")
    save_bundle(tmp_path, net, manifest)
    import snnctl.artifact as artifact

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifact, "save_safetensors", boom)
    with pytest.raises(OSError):
        save_bundle(tmp_path, net, manifest)
    assert not (tmp_path / MANIFEST).exists()  # the old manifest cannot vouch for unknown weights
    assert [p.name for p in tmp_path.iterdir()] == [WEIGHTS]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda p: (p / WEIGHTS).unlink(), "model.safetensors is missing"),
        (lambda p: (p / MANIFEST).unlink(), "snnctl.json is missing"),
        (lambda p: (p / WEIGHTS).write_bytes(b"\x00garbage" * 10), "corrupt weights"),
        (lambda p: (p / MANIFEST).write_text("{not json"), "not valid JSON"),
        (lambda p: _edit(p, format_version=99), "format version 99 is not supported"),
        (lambda p: _edit(p, zoo={"name": "vgg99", "config": {}}), "unknown model 'vgg99'"),
        (lambda p: _edit(p, zoo={"name": "cnn", "config": {"channels": [4, 4]}}), "do not match"),
    ],
)
def test_broken_bundles_are_one_clear_user_error(trained, tmp_path, breakage, message):
    path = copy(trained["snn"], tmp_path / "b")
    breakage(path)
    with pytest.raises(UserError) as err:
        load_bundle(path)
    assert message in err.value.line() and str(path) in err.value.line()


def _edit(path: Path, **changes) -> None:
    m = json.loads((path / MANIFEST).read_text())
    m.update(changes)
    (path / MANIFEST).write_text(json.dumps(m))


def test_missing_bundle_path():
    with pytest.raises(UserError, match="bundle not found"):
        load_bundle("/nonexistent/bundle")
