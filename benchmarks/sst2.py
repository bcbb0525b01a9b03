"""The SST-2 suite: spiking text classifiers against a same-size transformer, every row on the same data
and machine, in one run.

Rows: the spiking SSM encoder and its ANN twin (sst2-ssm-snn / sst2-ssm-ann), the spiking self-attention
encoder (sst2-attn-snn) and the BERT-style transformer of its size (sst2-bert-ann), the bag-of-embeddings
MLP (sst2-ann, `textmlp`) and its converted + calibrated SNN at T, and, with --distill, the best SNN
trained again on the strongest ANN's precomputed logits (`snnctl distill prepare`, alpha 0.7, T 4).
Each row is trained by its recipe as shipped (a run folder already holding a finished bundle is
reused), then measured by `snnctl bench --dataset sst2` on dev.tsv (6,735 entries) and its subset of
entries with at least 10 words. Bars (issue 19): on that subset the best SNN beats the converted
textmlp SNN by >= 3 points and is within 2 points of the transformer ANN; parameters of each SNN/ANN
pair within 10%. The best SNN and the strongest ANN are picked on dev, the split they are reported on
(no other labelled held-out split exists): the result records that beside the table.

    python benchmarks/sst2.py --runs /tmp/sst2-bench --save benchmarks/results/sst2.json --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

SNNS = ("sst2-ssm-snn", "sst2-attn-snn")
ANNS = ("sst2-ssm-ann", "sst2-bert-ann")
PAIRS = (("sst2-ssm-snn", "sst2-ssm-ann"), ("sst2-attn-snn", "sst2-bert-ann"))
TEXTMLP = "sst2-ann"
CONVERTED = "sst2-ann-converted"
DISTILLED = "distilled"


def snnctl(args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "snnctl", *args, "--json"], capture_output=True, text=True,
                          env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"snnctl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def trained(recipe: str, runs: Path, extra: list[str] | None = None, name: str | None = None) -> Path:
    out = runs / (name or recipe)
    if not (out / "snnctl.json").is_file():
        print(f"training {recipe} ...", file=sys.stderr)
        snnctl(["train", "--recipe", recipe, "--out", str(out), *(extra or [])])
    return out


def converted(textmlp: Path, runs: Path, T: int) -> Path:
    out = runs / CONVERTED
    if not (out / "snnctl.json").is_file():
        raw = runs / f"{CONVERTED}-raw"
        snnctl(["convert", str(textmlp), "--dataset", "sst2", "--T", str(T), "--out", str(raw)])
        snnctl(["calibrate", str(raw), "--dataset", "sst2", "--out", str(out)])
    return out


def distilled(student: str, teacher: Path, runs: Path) -> Path:
    out = runs / DISTILLED
    if not (out / "snnctl.json").is_file():
        logits = runs / f"{teacher.name}-logits"
        if not (logits / "logits.json").is_file():
            snnctl(["distill", "prepare", "--teacher", str(teacher), "--recipe", student, "--out", str(logits)])
        trained(student, runs, ["--set", f'distill.logits="{logits}"', "--set", "distill.alpha=0.7",
                                "--set", "distill.temperature=4.0"], name=DISTILLED)
    return out


def row(bundle: Path, latency_samples: int) -> dict[str, Any]:
    r = snnctl(["bench", str(bundle), "--dataset", "sst2", "--latency-samples", str(latency_samples)])["model"]
    metrics = json.loads((bundle / "snnctl.json").read_text())["metrics"]
    long = r["subsets"]["long"]
    return {
        "bundle": bundle.name, "model": r["model"], "kind": r["kind"], "T": r["T"],
        "accuracy": r["accuracy"], "accuracy_long": long["accuracy"], "long_size": long["size"],
        "latency_b1_ms": r["latency_b1_ms"], "latency_batch_ms": r["latency_batch_ms"],
        "throughput_per_s": r["throughput_per_s"], "spikes_per_inference": r["spikes_per_inference"],
        "spikes_per_token": r.get("spikes_per_token"), "tokens_per_inference": r.get("tokens_per_inference"),
        "firing_rate": r["firing_rate"], "layers": r["layers"], "macs": r["macs"], "sops": r["sops"],
        "energy_nj": r["energy_nj"], "vs_int8_ann": r["vs_int8_ann"], "params": r["params"],
        "size_bytes": r["size_bytes"], "train_wall_s": metrics.get("train_wall_s"),
        "train_steps": metrics.get("steps"),
    }


def bars(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spiking = [n for n in rows if rows[n]["kind"] != "ann" and n != CONVERTED]
    best = max(spiking, key=lambda n: rows[n]["accuracy_long"])
    transformer = rows["sst2-bert-ann"]["accuracy_long"]
    margin_converted = 100 * (rows[best]["accuracy_long"] - rows[CONVERTED]["accuracy_long"])
    gap_transformer = 100 * (transformer - rows[best]["accuracy_long"])
    pairs = {f"{s} / {a}": rows[s]["params"] / rows[a]["params"] for s, a in PAIRS}
    return {
        "best_snn": best,
        "best_snn_over_converted_textmlp_long_points": margin_converted,
        "best_snn_below_transformer_long_points": gap_transformer,
        "param_ratios": pairs,
        "met": {"beats_converted_by_3": margin_converted >= 3.0, "within_2_of_transformer": gap_transformer <= 2.0,
                "params_within_10pct": all(abs(r - 1) <= 0.10 for r in pairs.values())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/sst2-bench"))
    ap.add_argument("--T", type=int, default=8, help="time steps of the converted textmlp SNN")
    ap.add_argument("--latency-samples", type=int, default=100)
    ap.add_argument("--distill", action="store_true", help="add the best SNN distilled from the strongest ANN")
    ap.add_argument("--save", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    bundles = {recipe: trained(recipe, args.runs) for recipe in (*SNNS, *ANNS, TEXTMLP)}
    bundles[CONVERTED] = converted(bundles[TEXTMLP], args.runs, args.T)
    rows = {name: row(path, args.latency_samples) for name, path in bundles.items()}
    if args.distill:
        student = max(SNNS, key=lambda n: rows[n]["accuracy_long"])
        teacher = max((*ANNS, TEXTMLP), key=lambda n: rows[n]["accuracy"])
        rows[DISTILLED] = {**row(distilled(student, bundles[teacher], args.runs), args.latency_samples),
                           "student": student, "teacher": teacher}
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "conditions": "dev.tsv (6,735 entries) and its >=10-word subset; batch-1 latency over "
                      f"{args.latency_samples} calls, batched at 256; all rows in one run on this machine",
        "selection": "the best SNN (for the bars and as distillation student) and the strongest ANN (the "
                     "teacher) are picked on the same dev accuracy they are reported on: SST-2 has no public "
                     "test labels and no other held-out split is used, so the picked rows lean slightly up",
        "rows": rows,
        "bars": bars(rows),
    }
    if not emit(result, args.save, args.json):
        for name, r in rows.items():
            print(f"{name:22s} dev {100 * r['accuracy']:.2f}  long {100 * r['accuracy_long']:.2f}  "
                  f"b1 {r['latency_b1_ms']['p50']:.2f} ms  spikes {r['spikes_per_inference']}  params {r['params']}")
        print(json.dumps(result["bars"], indent=2))


if __name__ == "__main__":
    main()
