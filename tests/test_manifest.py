"""The typed manifest: version-1 files migrate and load, every field is checked on read, and one
loader serves every bundle kind through the `snnctl.bundles` registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from snnctl import manifest as M
from snnctl import registry
from snnctl.artifact import MANIFEST, Bundle, finish, load_bundle, make_manifest, read_info, save_bundle
from snnctl.contracts import bundle_loader
from snnctl.errors import UserError
from snnctl.zoo import build_network

V1 = Path(__file__).parent / "manifests_v1"  # written by make_manifest as it was in format version 1


def v1(kind: str) -> dict[str, Any]:
    return json.loads((V1 / f"{kind}.json").read_text())


def bundle_with_v1_manifest(tmp_path: Path, kind: str, model: torch.nn.Module) -> Path:
    """Save `model` as today's code does, then put the version-1 manifest back in place."""
    out = save_bundle(tmp_path / kind, model, v1(kind))
    (out / MANIFEST).write_text(json.dumps(v1(kind)))
    return out


def classifier(data: dict[str, Any]) -> torch.nn.Module:
    return build_network(data["zoo"]["name"], data["zoo"]["config"], kind=data["kind"], neuron=data["neuron"],
                         encoding=data["encoding"] or "direct", T=data["T"] or 1,
                         activation=data["zoo"].get("activation"))


# -- migration ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind", "loader"), [
    ("ann", "ann", "ann"), ("snn", "snn", "snn"), ("converted", "converted", "converted"),
    ("logic-gated", "snn", "logic-gated"), ("lm", "lm", "lm"),
])
def test_version_1_manifests_migrate(name: str, kind: str, loader: str) -> None:
    info = M.parse(v1(name), where="x")
    assert (info.format_version, info.kind, info.loader) == (2, kind, loader)
    data = info.as_dict()
    assert "task" not in data and data["zoo"] == v1(name)["zoo"] and data["metrics"] == v1(name)["metrics"]
    assert M.parse(data, where="x") == info  # v2 reads back as itself


def test_a_version_1_language_model_keeps_its_twin_and_chat() -> None:
    info = M.parse(v1("lm"), where="x")
    assert info.lm is not None and info.lm.spiking and info.lm.twin == "snn"
    assert info.chat == v1("lm")["chat"] and info.tokenizer == "tokenizer.json"
    ann = {**v1("lm"), "kind": "ann"}
    assert M.parse(ann, where="x").lm.twin == "ann"


@pytest.mark.parametrize("kind", ["ann", "snn"])
def test_version_1_classifier_bundles_load(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = classifier(v1(kind)).eval()
    path = bundle_with_v1_manifest(tmp_path, kind, model)
    bundle = load_bundle(path)
    assert bundle.info.kind == kind and bundle.manifest["format_version"] == 2
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(bundle.model(x), model(x))
    assert json.loads((save_bundle(tmp_path / "again", bundle.model, bundle.manifest) / MANIFEST).read_text())[
        "format_version"] == 2


def test_version_1_logic_gated_bundle_loads_through_the_ternary_loader(tmp_path: Path) -> None:
    from snnctl.robust.ternary import logic_gated_layers, to_logic_gated

    torch.manual_seed(0)
    model = classifier(v1("logic-gated"))
    model.readout_scale = to_logic_gated(model.body)
    path = bundle_with_v1_manifest(tmp_path, "logic-gated", model.eval())
    bundle = load_bundle(path)
    assert logic_gated_layers(bundle.model) and bundle.info.loader == "logic-gated"
    x = torch.rand(3, 64)
    assert torch.equal(bundle.model(x), model(x))


def test_version_1_converted_bundle_loads_through_the_conversion_loader(tmp_path: Path) -> None:
    from snnctl.conversion.convert import build_converted

    model = build_converted(v1("converted")).eval()
    path = bundle_with_v1_manifest(tmp_path, "converted", model)
    bundle = load_bundle(path)
    x = torch.rand(2, 1, 8, 8)
    assert bundle.info.conversion is not None and torch.equal(bundle.model(x), model(x))


def test_version_1_language_model_loads_with_both_entry_points(tmp_path: Path) -> None:
    from snnctl.lm import tokenizer as toks
    from snnctl.lm.bundle import LMBundle, load_lm
    from snnctl.lm.models import build_lm

    model = build_lm("spiking-ssm", "snn", v1("lm")["zoo"]["config"]).eval()
    out = save_bundle(tmp_path / "lm", model, v1("lm"), extra={toks.FILENAME: toks.to_json(toks.byte_tokenizer())})
    (out / MANIFEST).write_text(json.dumps(v1("lm")))
    for bundle in (load_lm(out), load_bundle(out, expect="lm"), load_bundle(out, expect=None)):
        assert isinstance(bundle, LMBundle) and bundle.chat["mode"] == "continuation"
        assert bundle.tokenizer.get_vocab_size() == bundle.model.vocab_size
    with pytest.raises(UserError, match="language model, not a classifier"):
        load_bundle(out)


def test_a_classifier_is_not_a_language_model(tmp_path: Path) -> None:
    from snnctl.lm.bundle import load_lm

    path = bundle_with_v1_manifest(tmp_path, "ann", classifier(v1("ann")))
    with pytest.raises(UserError, match="a classifier, not a language model") as err:
        load_lm(path)
    assert str(path) in err.value.line()


# -- every field checked on read ------------------------------------------------------------------------

def write_ann(tmp_path: Path) -> Path:
    return bundle_with_v1_manifest(tmp_path, "ann", classifier(v1("ann")))


@pytest.mark.parametrize(("changes", "message"), [
    ({"kind": "foo"}, "manifest key 'kind': unknown bundle kind 'foo' (installed: ann, converted, lm, snn"),
    ({"T": "4", "kind": "snn"}, "manifest key 'T': Input should be a valid integer"),
    ({"T": -1}, "manifest key 'T': Input should be greater than or equal to 1"),
    ({"zoo": "cnn"}, "manifest key 'zoo': Input should be a valid dictionary"),
    ({"zoo": None}, "manifest key 'zoo': Input should be a valid dictionary"),
    ({"zoo": {"name": "", "config": {}}}, "manifest key 'zoo.name'"),
    ({"zoo": {"name": "cnn", "config": [1]}}, "manifest key 'zoo.config'"),
    ({"encoding": "morse"}, "manifest key 'encoding': unknown encoding 'morse'"),
    ({"seed": 99999999999999999999999}, "manifest key 'seed'"),
    ({"metrics": [0.5]}, "manifest key 'metrics'"),
    ({"logic_gated": "yes"}, "manifest key 'logic_gated'"),
    ({"logic_gated": True, "kind": "converted"}, "a logic-gated bundle is a classifier SNN or ANN, not 'converted'"),
    ({"conversion": {"source": "cnn"}}, "manifest key 'conversion.source'"),
    ({"conversion": {"source": {"type": "zoo", "name": 3}}}, "manifest key 'conversion.source.name'"),
    ({"neuron": {"type": ["lif"]}}, "manifest key 'neuron.type': Input should be a valid string"),
    ({"tokenizer": "../../etc/passwd"}, "manifest key 'tokenizer': must be a file name"),
    ({"task": "translate"}, "unknown task 'translate'"),
    ({"format_version": "1"}, "format version '1' is not supported"),
])
def test_bad_fields_are_one_user_error_naming_file_and_key(tmp_path: Path, changes: dict, message: str) -> None:
    path = write_ann(tmp_path)
    (path / MANIFEST).write_text(json.dumps({**v1("ann"), **changes}))
    with pytest.raises(UserError) as err:
        load_bundle(path)
    line = err.value.line()
    assert message in line and str(path / MANIFEST) in line and "\n" not in line


def test_the_encoding_list_is_the_encoders_own() -> None:
    from snnctl.data.encoders import ENCODINGS

    for encoding in ENCODINGS:
        assert M.parse({**v1("snn"), "encoding": encoding}, where="x").encoding == encoding


@pytest.mark.parametrize(("changes", "key"), [
    ({"kind": "foo"}, "'kind'"), ({"T": "4"}, "'T'"), ({"T": -3}, "'T'"), ({"zoo": "cnn"}, "'zoo'"),
    ({"zoo": None}, "'zoo'"), ({"encoding": "morse"}, "'encoding'"),
])
def test_bench_on_a_tampered_manifest_exits_2_with_one_line(cli, tmp_path: Path, changes: dict, key: str) -> None:
    path = bundle_with_v1_manifest(tmp_path, "snn", classifier(v1("snn")))
    (path / MANIFEST).write_text(json.dumps({**v1("snn"), **changes}))
    result = cli("bench", path, "--dataset", "digits")
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1, result.err
    assert f"manifest key {key}" in lines[0] and str(path / MANIFEST) in lines[0]


def test_save_bundle_refuses_a_bad_manifest_before_writing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="manifest key 'T'"):
        save_bundle(tmp_path / "out", classifier(v1("ann")), {**v1("ann"), "T": 0})
    assert not (tmp_path / "out").exists()


def test_an_unreadable_kind_section_names_its_loader(tmp_path: Path) -> None:
    data = {**v1("lm")}
    data.pop("task")
    data["kind"] = "lm"  # a v2 language model without its `lm` section
    out = write_ann(tmp_path)
    (out / MANIFEST).write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(UserError, match="lacks 'lm'"):
        load_bundle(out, expect="lm")


def test_read_info_gives_the_typed_manifest(tmp_path: Path) -> None:
    info = read_info(write_ann(tmp_path))
    assert info.zoo.activation == {"type": "qcfs", "levels": 4} and info.neuron is None and info.T is None


# -- a third-party bundle kind ----------------------------------------------------------------------------

@bundle_loader("classify")
def load_toy(path: Path, info: M.Manifest, map_location: str = "cpu") -> Bundle:
    """The loader a plugin's `toy` kind registers: a model that is not from the zoo at all."""
    model = torch.nn.Linear(2, int(info.model_extra["toy"]["outputs"]))
    return finish(path, info, model, map_location)


def test_a_plugin_bundle_kind_loads_through_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = registry.entries

    def entries(kind: str) -> dict[str, registry.Entry]:
        found = dict(installed(kind))
        if kind == "bundles":
            found["toy"] = registry.Entry("bundles", "toy", "tests.test_manifest:load_toy", "toy-plugin")
        return found

    monkeypatch.setattr(registry, "entries", entries)
    model = torch.nn.Linear(2, 3)
    manifest = {**make_manifest(zoo_name="toy", zoo_config={}, kind="toy"), "toy": {"outputs": 3}}
    path = save_bundle(tmp_path / "toy", model, manifest)
    bundle = load_bundle(path)
    assert bundle.info.kind == "toy" and bundle.manifest["toy"] == {"outputs": 3}
    assert torch.equal(bundle.model.weight, model.weight)
    monkeypatch.setattr(registry, "entries", installed)
    with pytest.raises(UserError, match=r"unknown bundle kind 'toy' \(installed: ann, converted, lm, snn"):
        load_bundle(path)
