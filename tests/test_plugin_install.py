"""A third-party package adds a command and a model by declaring entry points, nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "snnctl-hello"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(FIXTURE)],
        check=True, capture_output=True, timeout=300,
    )
    return {**os.environ, "PYTHONPATH": str(target)}


def snnctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snnctl", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_installed_plugin_command_and_model_appear(plugin_env: dict[str, str]):
    listed = snnctl(plugin_env, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["kind"], r["name"]): r["package"] for r in json.loads(listed.stdout)}
    assert rows[("command", "hello")] == "snnctl-hello"
    assert rows[("model", "tiny")] == "snnctl-hello"
    assert rows[("command", "train")] == "snnctl"

    hello = snnctl(plugin_env, "hello", "--name", "spikes")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello, spikes"


def test_plugin_model_trains_as_an_snn(plugin_env: dict[str, str], tmp_path: Path):
    out = tmp_path / "tiny"
    done = snnctl(plugin_env, "train", "--recipe", "digits-snn", "--set", "model.name=tiny",
                  "--set", "model.config={}", "--set", "train.epochs=1", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "snn"
    assert json.loads((out / "snnctl.json").read_text())["zoo"]["name"] == "tiny"


def test_plugin_absent_without_the_package():
    done = snnctl(dict(os.environ), "plugins", "--json")
    assert "hello" not in {r["name"] for r in json.loads(done.stdout)}
