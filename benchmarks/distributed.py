"""Distributed training benchmark: `snnctl train --nproc 2` (torchrun, gloo, DDP) against one process.

- equivalence: digits-snn (its full 460 steps) and small-ssm (300 steps) on 1 and on 2 processes at
  the same global batch: the largest relative difference of any logged loss / held-out figure, the
  final weights' relative L2 distance, and the held-out results of both;
- resume: small-ssm (300 steps) on 2 processes, rank 1 killed with SIGKILL after its first checkpoint,
  resumed on 1 process, against the uninterrupted 1-process run (same measures);
- scaling: samples/s of small-ssm on 1 process with 2 threads against 2 processes with 1 thread each
  (the same 2 cores), and the communication share: 1 - (time of one process computing half the batch
  with 1 thread) / (time of a 2-process step). Run this part alone on the machine.

    python benchmarks/distributed.py --parts equivalence,resume,scaling --save benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

SSM = ["--set", "lm.steps=300", "--set", "lm.eval_every=100", "--set", "train.checkpoint_every=50"]
SCALING_STEPS = 40


def snnctl(args: list[str], threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SNNCTL_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "snnctl", *args, "--json"], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"snnctl {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def compare(one: Path, many: Path) -> dict[str, Any]:
    """Largest relative difference of each logged figure, and the final weights' relative L2 distance."""
    worst: dict[str, float] = {}
    for a, b in zip(lines(one), lines(many), strict=True):
        for key in a.keys() & b.keys() & {"loss", "val_bpb", "train_acc", "test_acc"}:
            worst[key] = max(worst.get(key, 0.0), abs(a[key] - b[key]) / max(abs(a[key]), 1e-12))
    wa, wb = load_file(one / "model.safetensors"), load_file(many / "model.safetensors")
    num = sum(float((wa[k] - wb[k]).pow(2).sum()) for k in wa if wa[k].is_floating_point())
    den = sum(float(wa[k].pow(2).sum()) for k in wa if wa[k].is_floating_point())
    return {"max_rel_diff": {k: float(f"{v:.3g}") for k, v in worst.items()},
            "weights_rel_l2": float(f"{(num / den) ** 0.5:.3g}")}


def held_out(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("test_acc", "val_bpb") if k in result}


def equivalence(work: Path) -> dict[str, Any]:
    found = {}
    for name, recipe, extra in (("digits-snn", "digits-snn", []), ("small-ssm-300", "small-ssm", SSM)):
        one, two = work / f"{name}-1", work / f"{name}-2"
        r1 = snnctl(["train", "--recipe", recipe, *extra, "--out", str(one)], threads=2)
        r2 = snnctl(["train", "--recipe", recipe, *extra, "--nproc", "2", "--out", str(two)], threads=1)
        found[name] = {"one_process": held_out(r1), "two_processes": held_out(r2), **compare(one, two)}
        print(f"{name}: {found[name]}", file=sys.stderr)
    return found


def descendants(pid: int) -> list[int]:
    """Every process started (transitively) by `pid`, from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def rank_pids(launcher: int, rank: str) -> list[int]:
    """The launcher's own worker processes of one rank (nothing else on the machine)."""
    pids = []
    for pid in descendants(launcher):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"\0RANK={rank}\0" in f"\0{raw}":
            pids.append(pid)
    return pids


def resume(work: Path) -> dict[str, Any]:
    one, killed = work / "small-ssm-300-1", work / "killed"
    args = ["train", "--recipe", "small-ssm", *SSM, "--out", str(killed)]
    if not one.exists():
        snnctl(["train", "--recipe", "small-ssm", *SSM, "--out", str(one)], threads=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "snnctl", *args, "--nproc", "2"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (killed / "checkpoints" / "checkpoint.safetensors").exists():
        if launcher.poll() is not None:
            raise SystemExit(f"the 2-process run ended before its first checkpoint: {launcher.stderr.read()}")
        time.sleep(0.2)
    victims = rank_pids(launcher.pid, "1")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    _, err = launcher.communicate()
    step = json.loads(Path(killed / "metrics.jsonl").read_text().splitlines()[-1])["step"] if lines(killed) else 0
    resumed = snnctl([*args, "--resume"], threads=2)
    return {"killed_rank": 1, "launcher_exit": launcher.returncode, "launcher_line": err.strip().splitlines()[-1],
            "last_logged_step_before_kill": step, "resumed_on": 1, "result": held_out(resumed),
            **compare(one, killed)}


def scaling(work: Path) -> dict[str, Any]:
    base = ["train", "--recipe", "small-ssm", "--set", f"lm.steps={SCALING_STEPS}",
            "--set", f"lm.eval_every={SCALING_STEPS + 1}", "--set", "lm.eval_windows=1"]
    runs = {
        "one_process_2_threads": (snnctl([*base, "--out", str(work / "s1")], threads=2), 16),
        "two_processes_1_thread": (snnctl([*base, "--nproc", "2", "--out", str(work / "s2")], threads=1), 16),
        "half_batch_1_thread": (snnctl([*base, "--set", "train.batch_size=8", "--out", str(work / "s3")],
                                       threads=1), 8),
    }
    found: dict[str, Any] = {}
    for name, (result, batch) in runs.items():
        step_s = result["train_wall_s"] / SCALING_STEPS
        found[name] = {"step_s": round(step_s, 4), "samples_per_s": round(batch / step_s, 2),
                       "tokens_per_s": result["train_tokens_per_s"]}
    two, half = found["two_processes_1_thread"]["step_s"], found["half_batch_1_thread"]["step_s"]
    found["speedup_2_vs_1"] = round(found["one_process_2_threads"]["step_s"] / two, 3)
    found["communication_share"] = round(max(0.0, 1 - half / two), 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="equivalence,resume,scaling")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    saved = json.loads(args.save.read_text()) if args.save and args.save.exists() else {}
    result: dict[str, Any] = {**saved, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                              "method": "snnctl train --nproc 2 (torchrun, gloo, DDP) against one process, "
                                        "same recipe and global batch"}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            started = time.perf_counter()
            result[part] = {**{"equivalence": equivalence, "resume": resume, "scaling": scaling}[part](Path(tmp)),
                            "measured": time.strftime("%Y-%m-%d"), "wall_s": round(time.perf_counter() - started, 1)}
            if args.save:
                emit(result, args.save, False)
    if not emit(result, args.save, args.json):
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
