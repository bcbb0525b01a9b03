"""Training: a run that is interrupted and resumed ends with exactly the weights of one that was not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from snnctl.config import load_recipe
from snnctl.errors import UserError
from snnctl.training.trainer import METRICS, learning_rate, train

# rate encoding: the encoder draws random numbers every step, which resume must reproduce too
SMALL = ["train.epochs=2", "train.checkpoint_every=5", "train.log_every=5", "model.config.channels=[4, 8]",
         "encoding.type=rate", "encoding.T=2"]


class Interrupt(Exception):
    pass


def stop_at(n: int):
    def on_step(step: int, total: int, info: dict) -> None:
        if step == n:
            raise Interrupt

    return on_step


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path: Path):
    recipe = load_recipe("digits-snn", SMALL)
    whole = train(recipe, tmp_path / "whole")
    with pytest.raises(Interrupt):
        train(recipe, tmp_path / "cut", on_step=stop_at(13))  # last checkpoint at step 10
    resumed = train(recipe, tmp_path / "cut", resume=True)
    a = load_file(whole.out / "model.safetensors")
    b = load_file(resumed.out / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resumed weights differ from the uninterrupted run"
    assert whole.metrics["test_acc"] == resumed.metrics["test_acc"]
    lines = [json.loads(x) for x in (whole.out / METRICS).read_text().splitlines()]
    again = [json.loads(x) for x in (resumed.out / METRICS).read_text().splitlines()]
    assert [x["step"] for x in lines] == [x["step"] for x in again]
    assert lines[-1] == again[-1]


def test_same_recipe_twice_gives_the_same_weights(tmp_path: Path):
    recipe = load_recipe("digits-ann", ["train.epochs=1", "model.config.channels=[4, 8]"])
    a = load_file(train(recipe, tmp_path / "a").out / "model.safetensors")
    b = load_file(train(recipe, tmp_path / "b").out / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_resume_refuses_a_checkpoint_of_another_recipe(tmp_path: Path):
    recipe = load_recipe("digits-ann", ["train.epochs=1", "model.config.channels=[4, 8]"])
    train(recipe, tmp_path / "run")
    other = load_recipe("digits-ann", ["train.epochs=1", "model.config.channels=[4, 8]", "train.lr=0.1"])
    with pytest.raises(UserError, match="different recipe"):
        train(other, tmp_path / "run", resume=True)


def test_metrics_are_json_lines_with_test_accuracy_each_epoch(tmp_path: Path):
    recipe = load_recipe("digits-ann", ["train.epochs=2", "model.config.channels=[4, 8]"])
    result = train(recipe, tmp_path / "run")
    lines = [json.loads(x) for x in (result.out / METRICS).read_text().splitlines()]
    epochs = [x for x in lines if "test_acc" in x]
    assert [x["epoch"] for x in epochs] == [1, 2]
    assert all({"step", "loss", "train_acc", "lr"} <= x.keys() for x in lines)
    assert (result.out / "checkpoints" / "checkpoint.safetensors").is_file()


def test_cosine_schedule_with_warmup():
    recipe = load_recipe("digits-ann", ["train.warmup_steps=10", "train.lr=1.0"])
    assert learning_rate(0, 110, recipe) == pytest.approx(0.1)
    assert learning_rate(10, 110, recipe) == pytest.approx(1.0)
    assert learning_rate(60, 110, recipe) == pytest.approx(0.5)
    assert learning_rate(109, 110, recipe) < 0.01
