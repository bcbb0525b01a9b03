"""Shared fixtures: an in-process CLI runner and small trained bundles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from snnctl.cli import run


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `snnctl ARGS...` in-process; return exit code, stdout and stderr."""

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


QUICK = ["--set", "train.epochs=1", "--set", "model.config.channels=[4, 8]"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-epoch ANN and SNN digits bundles: cheap, real bundles for bench and loading tests."""
    from snnctl.config import load_recipe
    from snnctl.training.trainer import train

    root = tmp_path_factory.mktemp("bundles")
    paths = {}
    for kind in ("ann", "snn"):
        recipe = load_recipe(f"digits-{kind}", ["train.epochs=1", "model.config.channels=[4, 8]"])
        paths[kind] = train(recipe, root / kind).out
    return paths


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def binary_snn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small spiking MLP on binarised digits, trained briefly: the input of robustify tests."""
    from snnctl.config import load_recipe
    from snnctl.training.trainer import train

    recipe = load_recipe("digits-bin-snn", ["train.epochs=4", "model.config.hidden=[64, 64]", "encoding.T=4"])
    return train(recipe, tmp_path_factory.mktemp("bin") / "snn").out
