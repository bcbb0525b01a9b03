"""The main job end to end, with the recipes exactly as shipped (slow: trains two real models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_digits_recipes_reach_their_accuracy_and_bench_compares_them(cli, tmp_path: Path):
    results = {}
    for kind in ("ann", "snn"):
        done = cli("train", "--recipe", f"digits-{kind}", "--out", tmp_path / kind, "--json")
        assert done.code == 0, done.err
        results[kind] = json.loads(done.out)
    assert results["ann"]["test_acc"] >= 0.97
    assert results["snn"]["test_acc"] >= 0.95
    bench = cli("bench", tmp_path / "snn", "--dataset", "digits", "--baseline", tmp_path / "ann", "--json")
    assert bench.code == 0, bench.err
    report = json.loads(bench.out)
    assert report["model"]["accuracy"] == pytest.approx(results["snn"]["test_acc"])
    assert report["baseline"]["accuracy"] == pytest.approx(results["ann"]["test_acc"])
