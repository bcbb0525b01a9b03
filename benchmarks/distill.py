"""Distillation benchmark: students trained on precomputed teacher logits against the same students from scratch.

For each task the teacher is trained with its recipe (teacher-fmnist, teacher-sst2, teacher-gpt2; a
folder already holding a finished bundle is reused), its logits are prepared once with
`snnctl distill prepare --recipe <student>`, then the student recipe (distill-fmnist-snn,
distill-sst2-snn, distill-small-ssm) is trained twice per seed on the same steps and data: distilled
(alpha 0.7, T 4) and from scratch (`--set distill.alpha=0`: the loss is exactly the cross-entropy, on
the same batches and, for the language model, the same aligned windows). Recorded:

- gain: held-out accuracy (Fashion-MNIST test, SST-2 dev) over seeds, or held-out bits per byte;
- speed: student steps/s with precomputed logits against online distillation (`--teacher`, the
  teacher run at every step), alternating short runs, for the GPT-2 teacher;
- storage: bytes per row and per example, teacher probability mass kept by the top K;
- prepare throughput (rows/s) and peak resident memory of the prepare process.

    python benchmarks/distill.py --runs /tmp/distill-bench --save benchmarks/results/distill.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

TASKS = {  # task -> (teacher recipe, student recipe, student overrides, held-out metric, higher is better)
    "fmnist": ("teacher-fmnist", "distill-fmnist-snn", [], "test_acc", True),  # the recipe's 4 epochs
    "sst2": ("teacher-sst2", "distill-sst2-snn", [], "test_acc", True),
    "lm": ("teacher-gpt2", "distill-small-ssm", ["--set", "lm.steps=300", "--set", "lm.eval_every=1000"],
           "val_bpb", False),
}
SPEED_STEPS = 40
SPEED = ["--set", f"lm.steps={SPEED_STEPS}", "--set", "lm.eval_every=1000", "--set", "lm.eval_windows=1"]


def snnctl(args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "snnctl", *args, "--json"], capture_output=True, text=True,
                          env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"snnctl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def teacher(recipe: str, runs: Path) -> tuple[Path, dict[str, Any]]:
    out = runs / recipe
    if (out / "snnctl.json").is_file():
        return out, json.loads((out / "snnctl.json").read_text())["metrics"]
    return out, snnctl(["train", "--recipe", recipe, "--out", str(out)])


def logits(teacher_dir: Path, student: str, runs: Path) -> tuple[Path, dict[str, Any]]:
    out = runs / f"{teacher_dir.name}-logits"
    if (out / "logits.json").is_file():
        return out, snnctl(["distill", "show", str(out)])
    return out, snnctl(["distill", "prepare", "--teacher", str(teacher_dir), "--recipe", student, "--out", str(out)])


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def gain(task: str, runs: Path, seeds: list[int]) -> dict[str, Any]:
    teacher_recipe, student, overrides, metric, higher = TASKS[task]
    teacher_dir, teacher_metrics = teacher(teacher_recipe, runs)
    logits_dir, index = logits(teacher_dir, student, runs)
    rows: dict[str, list[float]] = {"scratch": [], "distilled": []}
    for seed in seeds:
        for mode, extra in (("scratch", ["--set", "distill.alpha=0"]), ("distilled", [])):
            out = runs / f"{student}-{mode}-{seed}"
            result = snnctl(["train", "--recipe", student, "--distill", str(logits_dir), "--out", str(out),
                             "--set", f"train.seed={seed}", *overrides, *extra])
            rows[mode].append(result[metric])
            print(f"{task} seed {seed} {mode}: {metric} {result[metric]:.4f} ({result['train_wall_s']:.0f} s)",
                  file=sys.stderr)
    s, d = spread(rows["scratch"]), spread(rows["distilled"])
    better = d["mean"] - s["mean"] if higher else s["mean"] - d["mean"]
    return {
        "metric": metric, "seeds": seeds, "overrides": overrides, "teacher": {metric: teacher_metrics.get(metric),
                                                                             "params_recipe": teacher_recipe},
        "scratch": {**s, "values": rows["scratch"]}, "distilled": {**d, "values": rows["distilled"]},
        "gain": better, "seed_spread": max(s["max"] - s["min"], d["max"] - d["min"]),
        "beats_scratch_beyond_spread": better > max(s["max"] - s["min"], d["max"] - d["min"]),
        "storage": {"top_k": index["top_k"], "classes": index["classes"], "bytes_per_row": index["bytes_per_row"],
                    "bytes_per_example": index["bytes_per_example"], "bytes": index["bytes"],
                    "mass_kept": index["mass_kept"]},
        "prepare": index["prepare"],
    }


def speed(runs: Path, rounds: int) -> dict[str, Any]:
    """Steps/s of the LM student with precomputed logits, with the teacher online, and with no teacher
    (alpha 0: the labels alone), alternating. No teacher bounds what precomputing can reach:
    ratio <= 1 + (teacher forward) / (student step without a teacher)."""
    _, student, _, _, _ = TASKS["lm"]
    teacher_dir, logits_dir = runs / "teacher-gpt2", runs / "teacher-gpt2-logits"
    modes = {"precomputed": ["--distill", str(logits_dir)], "online": ["--teacher", str(teacher_dir)],
             "no_teacher": ["--distill", str(logits_dir), "--set", "distill.alpha=0"]}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for r in range(rounds):
        for mode, extra in modes.items():
            result = snnctl(["train", "--recipe", student, *extra, *SPEED, "--out", str(runs / f"speed-{mode}-{r}")])
            times[mode].append(result["steps"] / result["train_wall_s"])
    rate = {mode: statistics.median(values) for mode, values in times.items()}
    return {"steps_per_s": rate, "ratio": rate["precomputed"] / rate["online"],
            "bound": rate["no_teacher"] / rate["online"], "rounds": rounds, "all": times,
            "method": f"median over {rounds} alternating runs of {SPEED_STEPS} steps (train_wall_s: the loop alone), "
            "batch 16 x 256 tokens, small-ssm student, GPT-2 teacher (teacher-gpt2); bound = no teacher / online"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fmnist,sst2,lm,speed")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the classifier students")
    parser.add_argument("--lm-seeds", default="0", help="seeds of the language-model student")
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=Path("runs/distill-bench"))
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = json.loads(args.save.read_text()) if args.save and args.save.is_file() else {}
    result["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                         "python": platform.python_version()}
    for task in args.tasks.split(","):
        if task == "speed":  # after "lm" (its teacher and logits); run it alone on the machine
            result["speed"] = speed(args.runs, args.speed_rounds)
        else:
            seeds = [int(s) for s in (args.lm_seeds if task == "lm" else args.seeds).split(",")]
            result.setdefault("gain", {})[task] = gain(task, args.runs, seeds)
        emit(result, args.save, False)  # each finished task is kept, whatever happens to the next
    result["verdict"] = {
        **{f"{t}_beats_scratch_beyond_spread": g["beats_scratch_beyond_spread"] for t, g in result["gain"].items()},
        **({"precomputed_at_least_1_5x_online": result["speed"]["ratio"] >= 1.5} if "speed" in result else {}),
    }
    if not emit(result, args.save, args.json):
        print(json.dumps(result["verdict"], indent=2))


if __name__ == "__main__":
    main()
