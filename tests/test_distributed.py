"""Distributed training: `snnctl train --nproc N` (torchrun, gloo on CPU) against one process.

Real processes started through torchrun's launcher, as a user starts them. Tolerances, from
measurement: on short runs the loss curves agree to 1e-4 relative (the batch-norm CNN to 3e-3) and
the final weights to 1e-3 relative L2 (the CNN 2e-2); accuracies to one example in a hundred. What is
left is float summation order (gradients all-reduced, batch-norm statistics summed across processes),
which AdamW amplifies for near-zero gradients and spiking thresholds amplify further.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from snnctl.training.launch import Launch, torchrun_args
from tests.conftest import error_lines

TINY_LM = ["--set", "model.config={d_model = 32, n_layers = 2, d_state = 8}", "--set", "lm.seq_len=32",
           "--set", "lm.steps=24", "--set", "lm.eval_every=12", "--set", "train.batch_size=4",
           "--set", "train.warmup_steps=4", "--set", "train.checkpoint_every=8"]
DIGITS = ["--set", "train.epochs=2", "--set", "train.checkpoint_every=10"]


def snnctl(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "snnctl", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def weight_distance(a: Path, b: Path) -> float:
    """||a - b|| / ||a|| over every floating-point tensor of two bundles."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    num = sum(float((wa[k] - wb[k]).pow(2).sum()) for k in wa if wa[k].is_floating_point())
    den = sum(float(wa[k].pow(2).sum()) for k in wa if wa[k].is_floating_point())
    return (num / den) ** 0.5


def assert_same_run(one: Path, many: Path, loss_rtol: float = 1e-4, weight_rtol: float = 1e-3) -> None:
    a, b = metrics(one), metrics(many)
    assert [line["step"] for line in a] == [line["step"] for line in b]
    for la, lb in zip(a, b, strict=True):
        assert la.keys() == lb.keys()
        for key in la.keys() & {"loss", "val_bpb"}:
            assert la[key] == pytest.approx(lb[key], rel=loss_rtol), (la["step"], key)
        for key in la.keys() & {"train_acc", "test_acc"}:  # a spike flipped can turn one example
            assert la[key] == pytest.approx(lb[key], abs=0.01), (la["step"], key)
    assert weight_distance(one, many) < weight_rtol


@pytest.fixture(scope="module")
def single_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "one"
    done = snnctl("train", "--recipe", "small-ssm", *TINY_LM, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_what_one_does(single_lm: Path, tmp_path: Path, strategy: str) -> None:
    out = tmp_path / strategy
    done = snnctl("train", "--recipe", "small-ssm", *TINY_LM, "--set", f"train.strategy={strategy}",
                  "--nproc", "2", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # one JSON document: the main process's, nobody else's
    assert result["steps"] == 24 and result["out"] == str(out)
    assert_same_run(single_lm, out)


def test_micro_batches_equal_one_batch(single_lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "acc"
    done = snnctl("train", "--recipe", "small-ssm", *TINY_LM, "--set", "train.accumulate=2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert_same_run(single_lm, out)


@pytest.mark.slow
def test_classifier_with_batch_norm_on_two_processes(tmp_path: Path) -> None:
    """The digits CNN has batch norm: statistics over the global batch make two processes match one.
    (Its spiking twin drifts further, a spike flipped by rounding moving the rest: benchmarks/distributed.py.)"""
    one, two = tmp_path / "one", tmp_path / "two"
    assert snnctl("train", "--recipe", "digits-ann", *DIGITS, "--out", str(one)).returncode == 0
    done = snnctl("train", "--recipe", "digits-ann", *DIGITS, "--nproc", "2", "--out", str(two))
    assert done.returncode == 0, done.stderr
    assert_same_run(one, two, loss_rtol=3e-3, weight_rtol=2e-2)


@pytest.mark.slow
def test_kill_a_process_then_resume_with_another_count(tmp_path: Path) -> None:
    """kill -9 of rank 1 ends the run with one line; --resume on one process finishes it as if never stopped."""
    out, one = tmp_path / "killed", tmp_path / "one"
    args = ["train", "--recipe", "small-ssm", *TINY_LM, "--set", "lm.steps=150", "--set", "lm.eval_every=50"]
    assert snnctl(*args, "--out", str(one)).returncode == 0
    args += ["--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "snnctl", *args, "--nproc", "2"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = out / "checkpoints" / "checkpoint.safetensors"
    deadline = time.monotonic() + 180
    while not checkpoint.exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), launcher.communicate()[1]
    rank_one = [pid for pid in _children(launcher.pid) if _env(pid).get("RANK") == "1"]
    assert rank_one, "no process with RANK=1"
    os.kill(rank_one[0], 9)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1
    lines = [line for line in error_lines(err) if line.startswith("snnctl:")]  # the bar's last state aside
    assert len(lines) == 1 and "process 1 ended with signal SIGKILL" in lines[0], err
    assert not (out / "model.safetensors").exists()
    done = snnctl(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_run(one, out, loss_rtol=2e-3, weight_rtol=1e-2)  # 150 steps: rounding has longer to grow


def _children(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            kids = (task / "children").read_text().split()
            found += [int(k) for k in kids]
            todo += [int(k) for k in kids]
    return found


def _env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.mark.parametrize(("extra", "message"), [
    (["--nproc", "0"], "--nproc must be a positive integer"),
    (["--nproc", "two"], "--nproc must be a positive integer"),
    (["--nproc", "2", "--set", "train.batch_size=5"], "do not divide into 2 processes"),
    (["--nproc", "2", "--set", "train.strategy=single"], "strategy is single"),
    (["--set", "train.strategy=fsdp"], "fsdp shards a model across processes"),
    (["--nproc", "1", "--nnodes", "2"], "needs --rdzv-endpoint"),
])
def test_bad_distributed_input_is_one_line(cli, tmp_path: Path, extra: list[str], message: str) -> None:
    """Found before any process starts (in this process: no torchrun needed to see them)."""
    out = tmp_path / "run"
    done = cli("train", "--recipe", "small-ssm", *TINY_LM, "--out", out, *extra)
    assert done.code == 2, done.err
    lines = error_lines(done.err)
    assert len(lines) == 1 and message in lines[0], done.err
    assert not out.exists()


def test_error_found_by_the_processes_is_told_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = snnctl("train", "--recipe", "small-ssm", *TINY_LM, "--out", str(out), "--nproc", "2", "--resume")
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "no checkpoint to resume from" in lines[0], done.stderr
    assert not out.exists()


def test_last_batch_too_small_to_split(tmp_path: Path) -> None:
    """1437 digits in batches of 718: the epoch's last batch has 1 example, less than 2 processes."""
    out = tmp_path / "run"
    done = snnctl("train", "--recipe", "digits-ann", "--set", "train.batch_size=718", "--set", "train.epochs=1",
                  "--nproc", "2", "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert "the last of an epoch 1" in error_lines(done.stderr)[0]
    assert not (out / "metrics.jsonl").exists()


def test_rendezvous_port_in_use(cli, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("train", "--recipe", "small-ssm", *TINY_LM, "--nproc", "1", "--nnodes", "2",
                   "--rdzv-endpoint", f"127.0.0.1:{port}", "--out", tmp_path / "run")
    assert done.code == 2 and f"port {port} on 127.0.0.1 is already in use" in done.err


def test_rendezvous_that_never_completes_ends_in_bounded_time(tmp_path: Path) -> None:
    """Node 0 of 2 waits for a node that never comes: after --rdzv-timeout it gives up, one line, exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    done = snnctl("train", "--recipe", "small-ssm", *TINY_LM, "--nproc", "1", "--nnodes", "2",
                  "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-timeout", "5", "--out", str(tmp_path / "run"),
                  timeout=120)
    assert done.returncode == 1, done.stderr
    assert len(error_lines(done.stderr)) == 1 and "could not start together" in done.stderr
    assert time.monotonic() - started < 90


def test_torchrun_command_line_is_torchruns_own() -> None:
    from torch.distributed.run import parse_args

    args = parse_args(torchrun_args(Launch(2), ["train", "--recipe", "digits-snn"]))
    assert args.nproc_per_node == "2" and args.standalone and args.module
    assert args.training_script == "snnctl" and args.training_script_args == ["train", "--recipe", "digits-snn"]
    assert torch.distributed.is_available()
