"""Language-model training from a recipe with an [lm] section, readable top to bottom.

Windows of `seq_len + 1` tokens are drawn at offsets from a generator seeded by (seed, step), the
learning rate is a function of the step, and a checkpoint keeps weights, optimizer and RNG: a resumed
run ends with the same weights as one that never stopped. SNNs train through time with surrogate
gradients: the token axis is the neurons' time axis, run by the fused LIF kernel.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from snnctl.artifact import make_manifest, save_bundle
from snnctl.config import Recipe
from snnctl.data import load_dataset
from snnctl.errors import UserError
from snnctl.lm import tokenizer as toks
from snnctl.lm.corpus import TextCorpus
from snnctl.lm.models import build_lm
from snnctl.lm.scoring import bytes_per_token, score
from snnctl.training.checkpoint import save_checkpoint
from snnctl.training.trainer import (
    METRICS,
    StepCallback,
    TrainResult,
    learning_rate,
    optimizer_step,
    recipe_fingerprint,
    start_or_resume,
)

SSM_DYNAMICS = ("log_dt", "log_A_real", "A_imag")


def load_corpus(recipe: Recipe) -> TextCorpus:
    corpus = load_dataset(recipe.data.name, test_fraction=recipe.data.test_fraction,
                          split_seed=recipe.data.split_seed, **recipe.data.options)
    if not isinstance(corpus, TextCorpus):
        raise UserError(f"dataset '{recipe.data.name}' is not a text corpus", where="[data] name",
                        hint="language-model recipes use tinyshakespeare, chatterbot or textfile")
    return corpus


def resolve_tokenizer(recipe: Recipe, corpus: TextCorpus) -> Tokenizer:
    spec = recipe.lm.tokenizer if recipe.lm else "byte"
    if spec in ("byte", "bpe"):
        return toks.make_tokenizer(spec, [corpus.train], recipe.lm.bpe_vocab if recipe.lm else 0)
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"tokenizer '{spec}' is neither byte, bpe nor a file", where="[lm] tokenizer")
    return toks.load(path)


def encode(tok: Tokenizer, text: str) -> torch.Tensor:
    return torch.tensor(tok.encode(text).ids, dtype=torch.long)


def param_groups(model: torch.nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """SSM dynamics (A, dt) at their own small learning rate without weight decay, as S4D advises;
    matrices with weight decay; norms, biases, thresholds and embeddings without."""
    dynamics, decayed, plain = [], [], []
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1] in SSM_DYNAMICS:
            dynamics.append(p)
        elif p.ndim == 2 and "embed" not in name and "wte" not in name and "wpe" not in name:
            decayed.append(p)
        else:
            plain.append(p)
    assert recipe.lm is not None
    groups = [{"params": decayed, "weight_decay": recipe.train.weight_decay, "base_lr": recipe.train.lr},
              {"params": plain, "weight_decay": 0.0, "base_lr": recipe.train.lr}]
    if dynamics:
        groups.append({"params": dynamics, "weight_decay": 0.0, "base_lr": min(recipe.lm.ssm_lr, recipe.train.lr)})
    return [g for g in groups if g["params"]]


def batch_offsets(n_tokens: int, seq_len: int, batch: int, seed: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n_tokens - seq_len - 1, (batch,), generator=g)


def manifest_config(model: torch.nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """The builder config that rebuilds this model without the hub (a pretrained GPT-2 included)."""
    return model.arch() if hasattr(model, "arch") else config


def train_lm(recipe: Recipe, out: Path, *, resume: bool = False, device: str = "cpu",
             on_step: StepCallback | None = None) -> TrainResult:
    """Train the recipe's language model into `out`; finish with a bundle that includes the tokenizer."""
    lm, t = recipe.lm, recipe.train
    assert lm is not None
    corpus = load_corpus(recipe)
    tok = resolve_tokenizer(recipe, corpus)
    train_ids, val_ids = encode(tok, corpus.train), encode(tok, corpus.val)
    if len(train_ids) < lm.seq_len + 2 or len(val_ids) < lm.seq_len + 2:
        raise UserError(f"the corpus is shorter than one window of {lm.seq_len + 1} tokens", where="[lm] seq_len",
                        hint="use a shorter seq_len or more text")
    config = dict(recipe.model.config)
    config.setdefault("vocab_size", tok.get_vocab_size())
    if config["vocab_size"] != tok.get_vocab_size():
        raise UserError(f"model.config.vocab_size {config['vocab_size']} differs from the tokenizer's "
                        f"{tok.get_vocab_size()}", where="[model] config", hint="leave vocab_size out of the recipe")
    torch.manual_seed(t.seed)
    model = build_lm(recipe.model.name, recipe.model.kind, config)
    if getattr(model, "max_context", lm.seq_len) < lm.seq_len:
        raise UserError(f"seq_len {lm.seq_len} is longer than the model's context {model.max_context}",
                        where="[lm] seq_len")
    if t.init:
        from snnctl.lm.bundle import load_lm

        model.load_state_dict(load_lm(Path(t.init)).model.state_dict())
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, recipe), lr=t.lr)

    out = Path(out)
    ckpt_dir, metrics_path = out / "checkpoints", out / METRICS
    fingerprint = recipe_fingerprint(recipe)
    info = start_or_resume(out, model, optimizer, fingerprint, resume)
    step = int(info["step"])
    window_loss, window_n = info.get("window", (0.0, 0))  # the log line in progress at the checkpoint

    val_bpt = bytes_per_token(corpus.val, len(val_ids))
    total, L = lm.steps, lm.seq_len
    started, trained_steps = time.perf_counter(), 0
    model.train()
    with metrics_path.open("a") as log:
        while step < total:
            scale = learning_rate(step, total, recipe) / t.lr
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * scale
            offsets = batch_offsets(len(train_ids), L, t.batch_size, t.seed, step)
            chunk = torch.stack([train_ids[o : o + L + 1] for o in offsets.tolist()]).to(device)
            logits = model(chunk[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
            optimizer_step(model, optimizer, loss, t.grad_clip)
            step += 1
            trained_steps += 1
            window_loss += loss.item()
            window_n += 1
            line: dict[str, Any] = {}
            if step % t.log_every == 0 or step == total:
                line = {"step": step, "lr": t.lr * scale, "loss": window_loss / window_n}
                window_loss, window_n = 0.0, 0
            if step % lm.eval_every == 0 and step != total:
                line = line or {"step": step, "lr": t.lr * scale}
                line["val_bpb"] = score(model, val_ids, L, val_bpt, limit=lm.eval_windows)["bpb"]
            if line:
                log.write(json.dumps(line) + "\n")
                log.flush()
            if step % t.checkpoint_every == 0 or step == total:
                save_checkpoint(ckpt_dir, model, optimizer,
                                {"step": step, "fingerprint": fingerprint, "window": [window_loss, window_n]})
            if on_step is not None:
                on_step(step, total, line)
    wall = time.perf_counter() - started

    final = score(model, val_ids, L, val_bpt)
    metrics: dict[str, Any] = {
        "val_bpb": final["bpb"], "val_loss": final["loss"], "val_tokens": final["tokens"],
        **{k: final[k] for k in ("firing_rate", "firing_rates", "spikes_per_token") if k in final},
        "params": sum(p.numel() for p in model.parameters()),
        "steps": total, "tokens_seen": total * t.batch_size * L,
        "train_wall_s": round(wall, 3),
        "train_tokens_per_s": round(trained_steps * t.batch_size * L / max(wall, 1e-9), 1),
        "resumed": resume,
    }
    model.cpu()
    manifest = make_manifest(
        zoo_name=recipe.model.name, zoo_config=manifest_config(model, config), kind=recipe.model.kind,
        T=None, tokenizer=toks.FILENAME, recipe=recipe.model_dump(mode="json"), seed=t.seed,
        metrics={"dataset": corpus.name, **metrics},
    )
    manifest["task"] = "lm"
    manifest["chat"] = {
        "mode": "dialogue" if corpus.chat else "continuation",
        "template": corpus.chat,
        "trained_on": f"{corpus.name} ({len(corpus.train.encode('utf-8')):,} bytes, {total * t.batch_size * L:,} "
                      f"training tokens)",
        "instruction_tuned": False,
    }
    save_bundle(out, model, manifest, extra={toks.FILENAME: toks.to_json(tok)})
    return TrainResult(out=out, metrics=metrics)
