"""Language-model benchmark: small-ssm against its twins on tinyshakespeare, on this CPU.

1. Quality: trains small-ssm (spiking SSM), small-ssm-ann (the same SSM, GELU instead of spikes) and
   small-gpt2 (GPT-2-style transformer, ~same parameter count) for the same steps on the same
   windows (same seed, so the same offsets), and scores each on the whole held-out tenth: bits per
   byte, and firing rate per spiking site. The issue's bar: spiking SSM bpb within 15 % of GPT-2's.
2. Generation at batch 1: per-token time at contexts of 64, 512 and 2048 tokens (the context is
   fed first, then 64 tokens are generated greedily one step at a time, each timed; median), for the
   spiking SSM and for the transformer with its KV cache. Rounds alternate the models. The
   transformer for this part has 2048+ positions and random weights: speed does not depend on them.
   The bar: the SSM's per-token time at 2048 within 20 % of that at 64.
3. Training throughput side by side: forward+backward+AdamW steps on the recipes' batch shape, the
   models alternating in rounds; median tokens/s.

    python benchmarks/lm.py --save benchmarks/results/lm.json     # ~35 min on a 2-core CPU
    python benchmarks/lm.py --steps 20 --json                      # a quick look
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

from snnctl.config import load_recipe
from snnctl.lm.bundle import load_lm
from snnctl.lm.corpus import load_tinyshakespeare
from snnctl.lm.models import build_lm
from snnctl.training.progress import train_with_progress

RECIPES = ("small-ssm", "small-ssm-ann", "small-gpt2")
CONTEXTS = (64, 512, 2048)
GEN_TOKENS = 64


def train_all(work: Path, steps: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in RECIPES:
        recipe = load_recipe(name, [f"lm.steps={steps}"] if steps else [])
        result = train_with_progress(recipe, work / name, f"train {name}")
        m = result.metrics
        out[name] = {k: m[k] for k in ("val_bpb", "val_loss", "params", "steps", "tokens_seen", "train_wall_s",
                                       "train_tokens_per_s", "firing_rate", "firing_rates", "spikes_per_token")
                     if k in m}
    return out


@torch.no_grad()
def per_token_ms(model: torch.nn.Module, context: torch.Tensor) -> float:
    state = model.start(1)
    logits, state = model.prefill(context.unsqueeze(0), state)
    token = logits.argmax(-1)
    times = []
    for _ in range(GEN_TOKENS):
        t0 = time.perf_counter()
        logits, state = model.step(token, state)
        token = logits.argmax(-1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def generation(ssm: torch.nn.Module, text_ids: torch.Tensor, rounds: int = 3) -> dict[str, Any]:
    gpt_cfg = load_recipe("small-gpt2").model.config | {"n_positions": max(CONTEXTS) + GEN_TOKENS + 8}
    models = {"spiking-ssm": ssm.eval(), "gpt2": build_lm("gpt2", "ann", {"vocab_size": ssm.vocab_size,
                                                                          **gpt_cfg}).eval()}
    samples: dict[str, dict[int, list[float]]] = {m: {c: [] for c in CONTEXTS} for m in models}
    for _ in range(rounds):
        for ctx in CONTEXTS:
            for name, model in models.items():
                samples[name][ctx].append(per_token_ms(model, text_ids[:ctx]))
    out: dict[str, Any] = {}
    for name in models:
        ms = {c: statistics.median(v) for c, v in samples[name].items()}
        out[name] = {
            "per_token_ms": {str(c): round(v, 3) for c, v in ms.items()},
            "tokens_per_s": {str(c): round(1e3 / v, 1) for c, v in ms.items()},
            "slowdown_2048_vs_64": round(ms[2048] / ms[64] - 1, 4),
        }
    return out


def train_throughput(rounds: int = 3, steps: int = 4) -> dict[str, Any]:
    rates: dict[str, list[float]] = {}
    setups = {}
    for name in RECIPES:
        recipe = load_recipe(name)
        lm, t = recipe.lm, recipe.train
        torch.manual_seed(0)
        model = build_lm(recipe.model.name, recipe.model.kind, {"vocab_size": 259, **recipe.model.config})
        ids = torch.randint(0, 259, (t.batch_size, lm.seq_len + 1))
        setups[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4), ids)
        rates[name] = []
    for _ in range(rounds):
        for name, (model, opt, ids) in setups.items():
            started = time.perf_counter()
            for _ in range(steps):
                logits = model(ids[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
            rates[name].append(steps * ids[:, 1:].numel() / (time.perf_counter() - started))
    med = {n: statistics.median(r) for n, r in rates.items()}
    return {"tokens_per_s": {n: round(v, 1) for n, v in med.items()},
            "ssm_over_gpt2": round(med["small-ssm"] / med["small-gpt2"], 3),
            "method": f"median of {rounds} alternating rounds of {steps} fwd+bwd+AdamW steps, batch x seq of the "
                      "recipes"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="override lm.steps of the three recipes")
    parser.add_argument("--work", type=Path, default=Path("runs/lm-bench"))
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-train", action="store_true", help="reuse the bundles already in --work")
    args = parser.parse_args()

    result: dict[str, Any] = {
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "python": platform.python_version()},
    }
    result["quality"] = (
        {n: load_lm(args.work / n).manifest["metrics"] for n in RECIPES} if args.skip_train
        else train_all(args.work, args.steps)
    )
    q = result["quality"]
    result["bpb_ratio_ssm_over_gpt2"] = round(q["small-ssm"]["val_bpb"] / q["small-gpt2"]["val_bpb"], 4)
    bundle = load_lm(args.work / "small-ssm")
    val = bundle.tokenizer.encode(load_tinyshakespeare(test_fraction=0.1).val).ids
    result["generation_batch1"] = generation(bundle.model, torch.tensor(val))
    result["train_throughput"] = train_throughput()
    g = result["generation_batch1"]["spiking-ssm"]
    result["verdict"] = {
        "bpb_within_15pct_of_gpt2": result["bpb_ratio_ssm_over_gpt2"] <= 1.15,
        "ssm_per_token_flat_within_20pct": abs(g["slowdown_2048_vs_64"]) <= 0.20,
        "small_ssm_train_minutes": round(q["small-ssm"]["train_wall_s"] / 60, 2),
    }
    if not emit(result, args.save, args.json):
        print(result)


if __name__ == "__main__":
    main()
