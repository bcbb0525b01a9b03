"""Fuzz the manifest reader: any JSON value at any key gives a manifest or one UserError, nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnctl import manifest as M
from snnctl.artifact import MANIFEST, load_bundle, save_bundle
from snnctl.errors import UserError
from snnctl.zoo import build_network

V1 = Path(__file__).parent / "manifests_v1"
KINDS = ("ann", "snn", "converted", "logic-gated", "lm")
FUZZ = settings(max_examples=200, deadline=None)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | \
    st.sampled_from(["ann", "snn", "lm", "converted", "direct", "rate", "cnn", "mlp", "lif", "qcfs"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=6) | st.sampled_from(["name", "config", "type"]), inner,
                                      max_size=3), max_leaves=8)


def v1(kind: str) -> dict[str, Any]:
    return json.loads((V1 / f"{kind}.json").read_text())


def tampered(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else target
    target[path[-1]] = value
    return data


def key_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in data.items():
        paths.append((*prefix, key))
        if isinstance(value, dict) and len(prefix) < 2:
            paths.extend(key_paths(value, (*prefix, key)))
    return paths


EVERY_KEY = sorted({(kind, p) for kind in KINDS for p in key_paths(v1(kind))} |
                   {(kind, ("extra",)) for kind in KINDS})


@FUZZ
@given(where=st.sampled_from(EVERY_KEY), value=values)
def test_any_value_at_any_key_parses_or_is_one_user_error(where: tuple[str, tuple[str, ...]], value: Any) -> None:
    kind, path = where
    try:
        M.parse(tampered(v1(kind), path, value), where="b/snnctl.json")
    except UserError as err:
        assert err.where == "b/snnctl.json" and "\n" not in err.line()


@FUZZ
@given(data=values)
def test_any_json_document_parses_or_is_one_user_error(data: Any) -> None:
    try:
        M.parse(data, where="b/snnctl.json")
    except UserError as err:
        assert err.where == "b/snnctl.json" and "\n" not in err.line()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny SNN MLP bundle and its manifest's text: loading it builds in milliseconds."""
    manifest = {**v1("snn"), "zoo": {"name": "mlp", "config": {"hidden": [3], "in_features": 4, "num_classes": 2}}}
    net = build_network("mlp", manifest["zoo"]["config"], kind="snn", neuron=manifest["neuron"], T=2)
    path = save_bundle(tmp_path_factory.mktemp("fuzz") / "b", net, manifest)
    return path, (path / MANIFEST).read_text()


@FUZZ
@given(key=st.sampled_from(["kind", "T", "encoding", "neuron", "logic_gated", "zoo", "conversion", "lm", "seed"]),
       config_key=st.sampled_from(["hidden", "in_features", "num_classes", "dropout", "bogus"]),
       value=values, in_config=st.booleans())
def test_loading_a_tampered_bundle_is_a_model_or_one_user_error(
    tiny: tuple[Path, str], key: str, config_key: str, value: Any, in_config: bool
) -> None:
    path, original = tiny
    data = json.loads(original)
    if in_config:
        data["zoo"]["config"][config_key] = value
    else:
        data[key] = value
    (path / MANIFEST).write_text(json.dumps(data))
    try:
        bundle = load_bundle(path, expect=None)
    except UserError as err:
        assert str(path) in err.line() and "\n" not in err.line()
    else:
        assert isinstance(bundle.model, torch.nn.Module)


@pytest.fixture(scope="module")
def tiny_converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny converted MLP bundle and its manifest's text."""
    from snnctl.conversion.convert import build_converted

    config = {"hidden": [3], "in_features": 4, "num_classes": 2}
    manifest = v1("converted")
    manifest["zoo"] = {"name": "mlp", "config": config}
    manifest["conversion"]["source"] = {"type": "zoo", "name": "mlp", "config": config, "activation": None}
    path = save_bundle(tmp_path_factory.mktemp("fuzz") / "c", build_converted(manifest), manifest)
    return path, (path / MANIFEST).read_text()


@FUZZ
@given(key=st.sampled_from(["type", "name", "config", "activation", "hidden", "in_features", "readout_delay",
                            "graded_levels", "hybrid"]), value=values)
def test_loading_a_tampered_converted_bundle_is_a_model_or_one_user_error(
    tiny_converted: tuple[Path, str], key: str, value: Any
) -> None:
    path, original = tiny_converted
    data = json.loads(original)
    conversion = data["conversion"]
    if key in ("readout_delay", "graded_levels", "hybrid"):
        conversion[key] = value
    elif key in ("hidden", "in_features"):
        conversion["source"]["config"][key] = value
    else:
        conversion["source"][key] = value
    (path / MANIFEST).write_text(json.dumps(data))
    try:
        bundle = load_bundle(path)
    except UserError as err:
        assert str(path) in err.line() and "\n" not in err.line()
    else:
        assert isinstance(bundle.model, torch.nn.Module)


@pytest.mark.parametrize("config", [{"hidden": [-1]}, {"hidden": [0]}, {"num_classes": -2}])
def test_a_zoo_config_that_builds_nothing_is_one_user_error(tiny: tuple[Path, str], config: dict) -> None:
    path, original = tiny
    data = json.loads(original)
    data["zoo"]["config"].update(config)
    (path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        load_bundle(path)
    assert str(path) in err.value.line() and "\n" not in err.value.line()
