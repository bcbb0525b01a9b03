"""The command-line contract: --help, --version, --json, exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snnctl import __version__
from snnctl.config import available_recipes
from tests.conftest import QUICK, error_lines


def assert_one_line_user_error(result, *needles: str) -> None:
    assert result.code == 2, result.err
    lines = error_lines(result.err)
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0]


def test_version_and_help(cli):
    assert cli("--version").out.strip() == f"snnctl {__version__}"
    helped = cli("--help")
    assert helped.code == 0
    for command in ("train", "bench", "recipes", "plugins", "convert", "calibrate", "compile", "chat", "data",
                    "distill", "serve", "Examples"):
        assert command in helped.out


def test_plugins_lists_builtins_with_their_package(cli):
    rows = json.loads(cli("plugins", "--json").out)
    names = {(r["kind"], r["name"]) for r in rows}
    assert {("command", "train"), ("model", "resnet18"), ("dataset", "digits"), ("neuron", "alif")} <= names
    assert all(r["package"] == "snnctl" for r in rows)


def test_recipes_list_and_show(cli):
    listed = json.loads(cli("recipes", "list", "--json").out)
    assert {"digits-ann", "digits-snn"} <= {r["name"] for r in listed}
    shown = json.loads(cli("recipes", "show", "digits-snn", "--set", "encoding.T=6", "--json").out)
    assert shown["encoding"]["T"] == 6 and shown["model"]["kind"] == "snn"
    toml = cli("recipes", "show", "digits-snn").out
    assert '[neuron]' in toml and 'kind = "snn"' in toml


def test_usage_error_exits_2(cli):
    assert cli("train", "--no-such-flag").code == 2
    assert cli("no-such-command").code == 2


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--recipe", "no-such-recipe"], ["unknown recipe 'no-such-recipe'"]),
        (["--recipe", "digits-snn", "--set", "train.lrr=1"], ["train.lrr", "no such"]),
        (["--recipe", "digits-snn", "--set", "neuron.surrogate=boxcar"], ["neuron.surrogate"]),
        (["--recipe", "digits-snn", "--set", "data.name=mnist"], ["unknown dataset 'mnist'"]),
        (["--recipe", "digits-snn", "--set", "model.name=vgg99"], ["unknown model 'vgg99'"]),
        (["--recipe", "digits-snn", "--set", "trainlr"], ["KEY.PATH=VALUE"]),
    ],
)
def test_train_bad_input_is_one_line_and_writes_nothing(cli, tmp_path: Path, args, needles):
    out = tmp_path / "run"
    result = cli("train", *args, "--out", out)
    assert_one_line_user_error(result, *needles)
    assert not out.exists()


def test_train_mistyped_key_in_recipe_file(cli, tmp_path: Path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text('extends = "digits-ann"\n[train]\nepochz = 3\n')
    result = cli("train", "--recipe", recipe, "--out", tmp_path / "run")
    assert_one_line_user_error(result, str(recipe), "train.epochz: unknown key", "epochs")


def test_resume_without_checkpoint_is_a_user_error(cli, tmp_path: Path):
    result = cli("train", "--recipe", "digits-ann", *QUICK, "--out", tmp_path / "none", "--resume")
    assert_one_line_user_error(result, "no checkpoint")


def test_bench_bad_inputs(cli, trained, tmp_path: Path):
    assert_one_line_user_error(cli("bench", tmp_path / "nope", "--dataset", "digits"), "bundle not found")
    assert_one_line_user_error(cli("bench", trained["snn"], "--dataset", "mnist"), "unknown dataset 'mnist'")
    broken = tmp_path / "broken"
    shutil.copytree(trained["snn"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert_one_line_user_error(cli("bench", broken, "--dataset", "digits"), "corrupt weights", str(broken))


def test_debug_shows_the_traceback(cli):
    result = cli("--debug", "train", "--recipe", "no-such-recipe")
    assert result.code == 2 and "Traceback" in result.err


def test_bench_json_compares_snn_with_ann(cli, trained):
    result = cli("bench", trained["snn"], "--dataset", "digits", "--baseline", trained["ann"],
                 "--latency-samples", "5", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    snn, ann = report["model"], report["baseline"]
    assert snn["kind"] == "snn" and ann["kind"] == "ann"
    assert 0 < snn["firing_rate"] < 1 and snn["spikes_per_inference"] > 0
    assert len(snn["layers"]) == 2 and all(0 <= layer["firing_rate"] <= 1 for layer in snn["layers"])
    assert ann["sops"] == 0 and ann["macs"] > 0 and snn["sops"] > 0
    assert snn["latency_b1_ms"]["p95"] >= snn["latency_b1_ms"]["p50"] > 0
    stream = snn["latency_stream_ms"]
    assert stream["p50"] > 0 and stream["event_layer_calls"] + stream["dense_layer_calls"] > 0
    assert ann["latency_stream_ms"] is None
    assert snn["params"] == ann["params"]
    assert "estimate" in report["energy_constants"]["note"] and report["energy_constants"]["e_mac_pj"] == 4.6


def test_bench_table_prints_constants_and_says_estimate(cli, trained):
    result = cli("bench", trained["snn"], "--dataset", "digits", "--latency-samples", "3")
    assert result.code == 0
    assert "ESTIMATE" in result.out and "4.6 pJ" in result.out and "firing rate" in result.out


def test_console_script_runs_as_a_real_process():
    exe = Path(sys.executable).with_name("snnctl")
    done = subprocess.run([str(exe), "train", "--recipe", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    available = ", ".join(available_recipes())
    assert done.stderr.strip().splitlines() == [
        f"snnctl: error: unknown recipe 'nope' (available: {available}; or give a path to a .toml file)"
    ]
    assert done.stdout == ""


def test_a_name_claimed_twice_goes_to_the_builtin_and_is_reported_once(capsys, monkeypatch):
    from snnctl import registry

    monkeypatch.setattr(registry, "_clashes", {})  # this test's clashes stay out of `snnctl plugins`

    claims = [registry.Entry("models", "net", "other:build", "snnctl-other"),
              registry.Entry("models", "net", "snnctl.zoo.mlp:build", "snnctl"),
              registry.Entry("models", "net", "third:build", "snnctl-third"),
              registry.Entry("models", "solo", "other:solo", "snnctl-other")]
    chosen = registry.resolve("test models", claims)
    assert chosen["net"].package == "snnctl" and chosen["solo"].package == "snnctl-other"
    registry.resolve("test models", claims)  # looked up again: no second warning
    err = capsys.readouterr().err
    assert err.count("warning: test model 'net' is provided by snnctl and snnctl-other, snnctl-third; "
                     "using snnctl's") == 1
    clash = next(c for c in registry.clashes() if c.kind == "test models")
    assert [e.package for e in clash.ignored] == ["snnctl-other", "snnctl-third"]
    third_party = registry.resolve("test others", claims[:1] + claims[2:3])
    assert third_party["net"].package == "snnctl-other"  # no built-in: the first installed, and said so
    assert "using snnctl-other's" in capsys.readouterr().err
