"""Training: a run that is interrupted and resumed ends with exactly the weights of one that was not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from snnctl.config import load_recipe
from snnctl.errors import UserError
from snnctl.training.trainer import METRICS, learning_rate, train
from tests.conftest import error_lines

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


# -- resume at several cadences ---------------------------------------------------------------------

CADENCES = [  # (log_every, checkpoint_every, interrupted after step); 5/5 is the first test's
    (4, 5, 13),
    (3, 7, 16),
]


@pytest.mark.parametrize(("log_every", "checkpoint_every", "stop"), CADENCES)
def test_resumed_metrics_equal_uninterrupted_ones_at_any_cadence(tmp_path: Path, log_every: int,
                                                                  checkpoint_every: int, stop: int):
    cadence = [f"train.log_every={log_every}", f"train.checkpoint_every={checkpoint_every}"]
    recipe = load_recipe("digits-snn", [*SMALL, *cadence])
    whole = train(recipe, tmp_path / "whole")
    with pytest.raises(Interrupt):
        train(recipe, tmp_path / "cut", on_step=stop_at(stop))
    resumed = train(recipe, tmp_path / "cut", resume=True)
    assert (whole.out / METRICS).read_text() == (resumed.out / METRICS).read_text()
    a, b = load_file(whole.out / "model.safetensors"), load_file(resumed.out / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_the_task_comes_from_the_recipe_through_the_tasks_group():
    from snnctl import registry

    assert set(registry.entries("tasks")) >= {"classify", "lm"}
    assert load_recipe("digits-snn").task == "classify" and load_recipe("small-ssm").task == "lm"


# -- bad input on the command line: exit 2, one line, nothing written -----------------------------

def _refused(cli, tmp_path: Path, *args: str, match: str) -> None:
    """Exit 2, one line, and nothing written anywhere under tmp_path (files and their contents)."""
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    result = cli(*args)
    lines = error_lines(result.err)
    assert result.code == 2, result.err
    assert len(lines) == 1 and match in lines[0], lines
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="triton may fit where there is a GPU")
def test_a_kernel_that_does_not_fit_the_device_is_refused_before_writing(cli, tmp_path: Path):
    _refused(cli, tmp_path, "train", "--recipe", "digits-snn", "--kernel", "triton", "--out", tmp_path / "run",
             match="kernel 'triton'")


def test_an_unknown_device_is_refused(cli, tmp_path: Path):
    _refused(cli, tmp_path, "train", "--recipe", "digits-snn", "--device", "tpu", "--out", tmp_path / "run",
             match="unknown device 'tpu'")


def test_an_out_that_is_a_file_or_under_one_or_unwritable_is_refused_first(cli, tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, match in ((afile, "existing file"), (afile / "run", "under a file"), (Path("/proc/run"), "not writable")):
        _refused(cli, tmp_path, "train", "--recipe", "digits-snn", "--out", out, match=match)
    assert afile.read_text() == "x"


def test_a_seed_out_of_range_is_a_recipe_error(cli, tmp_path: Path):
    _refused(cli, tmp_path, "train", "--recipe", "digits-snn", "--set", "train.seed=99999999999999999999999",
             "--out", tmp_path / "run", match="train.seed")


def test_a_binary_recipe_file_is_refused(cli, tmp_path: Path):
    recipe = tmp_path / "r.toml"
    recipe.write_bytes(bytes(range(256)))
    _refused(cli, tmp_path, "train", "--recipe", recipe, "--out", tmp_path / "run", match="not a text file")


def test_set_under_a_value_is_refused(cli, tmp_path: Path):
    _refused(cli, tmp_path, "train", "--recipe", "digits-snn", "--set", "model.config=5",
             "--set", "model.config.a=1", "--out", tmp_path / "run", match="model.config is 5, not a table")


def test_an_lm_recipe_refuses_classifier_keys(cli, tmp_path: Path):
    _refused(cli, tmp_path, "recipes", "show", "small-ssm", "--set", "train.optimizer=sgd",
             "--set", "neuron.type=alif", match="train.optimizer: no such key in a recipe of task 'lm'")
    _refused(cli, tmp_path, "recipes", "show", "small-ssm", "--set", "neuron.type=alif",
             match="neuron.type: no such key")
    assert cli("recipes", "show", "small-ssm", "--set", "train.lr=1e-3").code == 0


def test_logic_gated_rules_live_in_the_recipe_schema():
    with pytest.raises(UserError, match=r"on an ANN needs model\.activation = 'relu', not 'qcfs'"):
        load_recipe("digits-ann", ["model.logic_gated=true", "model.activation=qcfs"])
    assert load_recipe("digits-bin-ann", ["model.logic_gated=true"]).model.logic_gated
    with pytest.raises(UserError, match="fixed threshold, not 'alif'"):
        load_recipe("digits-snn", ["model.logic_gated=true", "neuron.type=alif"])


def test_a_forced_kernel_that_does_not_take_the_model_is_found_before_writing(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch):
    from snnctl.nn import kernels
    from snnctl.nn.kernels import lif

    monkeypatch.setitem(kernels._default, "kernel", "c")
    monkeypatch.setattr(lif, "c_fits", lambda *args: False)  # as for input the native kernel cannot take
    with pytest.raises(UserError, match="kernel 'c' needs"):
        train(load_recipe("digits-snn", SMALL), tmp_path / "run")
    assert not (tmp_path / "run").exists()
