"""The main job end to end, with the recipes exactly as shipped (slow: trains two real models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# chat-ssm as shipped (Schema-Guided Dialogue) measured 1.354 bits per byte on its held-out dialogues
# (README); a margin for other machines' float summation order, not for a broken model (an untrained one
# scores about 8).
CHAT_SSM_MAX_BPB = 1.5


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


def test_chat_on_a_fresh_machine_trains_the_default_model_once_and_answers(cli, tmp_path: Path, monkeypatch):
    """`snnctl chat` with no bundle and an empty SNNCTL_HOME: the chat-ssm recipe as shipped is trained,
    cached, and replies; a second call reuses the cache."""
    import io
    import sys

    monkeypatch.setenv("SNNCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    first = cli("chat", "--prompt", "Hello", "--json", "--seed", "0", "--max-tokens", "40")
    assert first.code == 0, first.err
    assert "training the default one once" in first.err
    data = json.loads(first.out)
    assert data["reply"].strip() and data["stats"]["spikes_per_token"] > 0
    manifest = json.loads((tmp_path / "home/cache/chat-ssm/snnctl.json").read_text())
    assert manifest["recipe"]["name"] == "chat-ssm" and manifest["chat"]["mode"] == "dialogue"
    assert manifest["metrics"]["val_bpb"] < CHAT_SSM_MAX_BPB
    again = cli("chat", "--prompt", "Hello", "--json", "--seed", "0", "--max-tokens", "40")
    assert again.code == 0 and "training" not in again.err
    assert json.loads(again.out)["reply"] == data["reply"]
