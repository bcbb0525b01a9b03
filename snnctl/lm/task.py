"""Language modelling as a training task (recipe task "lm"), run by the one loop (snnctl.training.loop).

Windows of `seq_len + 1` tokens are drawn at offsets from a generator seeded by (seed, step). SNNs
train through time with surrogate gradients: the token axis is the neurons' time axis, run by the
fused LIF kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from snnctl import registry
from snnctl.artifact import make_manifest, save_bundle
from snnctl.config import LMRecipe
from snnctl.data import load_dataset
from snnctl.data.prepared import is_prepared
from snnctl.errors import UserError
from snnctl.lm import tokenizer as toks
from snnctl.lm.corpus import TextCorpus, prepared_corpus
from snnctl.lm.models import build_lm
from snnctl.lm.scoring import bytes_per_token, score
from snnctl.lm.teacher import load_lm_teacher, tokenizer_fingerprint
from snnctl.training.distill import fingerprint, make_distiller, record
from snnctl.training.loop import model_param_groups, unwrap


def load_corpus(recipe: LMRecipe) -> TextCorpus:
    """A registered corpus, or a prepared text or dialogue folder (its split fixed at prepare time)."""
    name = recipe.data.name
    if name not in registry.entries("datasets") and is_prepared(name):
        if recipe.data.options:
            raise UserError("a prepared dataset takes no options", where="[data] options",
                            hint="leave [data.options] out; its split and format were fixed by `snnctl data prepare`")
        return prepared_corpus(Path(name))
    corpus = load_dataset(name, test_fraction=recipe.data.test_fraction, split_seed=recipe.data.split_seed,
                          **recipe.data.options)
    if not isinstance(corpus, TextCorpus):
        raise UserError(f"dataset '{name}' is not a text corpus", where="[data] name",
                        hint="language-model recipes use tinyshakespeare, chatterbot, sgd, textfile or a folder "
                        "prepared from text or dialogues")
    return corpus


def resolve_tokenizer(recipe: LMRecipe, corpus: TextCorpus) -> Tokenizer:
    spec = recipe.lm.tokenizer
    if spec in ("byte", "bpe"):
        return toks.make_tokenizer(spec, [corpus.train], recipe.lm.bpe_vocab)
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"tokenizer '{spec}' is neither byte, bpe nor a file", where="[lm] tokenizer")
    return toks.load(path)


def encode(tok: Tokenizer, text: str) -> torch.Tensor:
    return torch.tensor(tok.encode(text).ids, dtype=torch.long)


def batch_offsets(n_tokens: int, seq_len: int, batch: int, seed: int, step: int, aligned: bool) -> torch.Tensor:
    """Where each window of the step starts: anywhere, or on the grid of `seq_len` (the windows whose
    every position precomputed teacher logits cover)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    if aligned:
        return torch.randint(0, aligned_windows(n_tokens, seq_len), (batch,), generator=g) * seq_len
    return torch.randint(0, n_tokens - seq_len - 1, (batch,), generator=g)


def aligned_windows(n_tokens: int, seq_len: int) -> int:
    """Windows of seq_len + 1 tokens starting at multiples of seq_len (each shares its last token)."""
    return (n_tokens - 1) // seq_len


def distill_expect(corpus: TextCorpus, tok: Tokenizer, ids: torch.Tensor, seq_len: int) -> dict[str, Any]:
    """What precomputed logits for this corpus must be: a row per position of every aligned window."""
    return {"task": "lm", "rows": aligned_windows(len(ids), seq_len) * seq_len, "classes": tok.get_vocab_size(),
            "seq_len": seq_len, "tokenizer": tokenizer_fingerprint(tok), "fingerprint": fingerprint(corpus.train),
            "sample": ids[None, :seq_len]}


def manifest_config(model: torch.nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """The builder config that rebuilds this model without the hub (a pretrained GPT-2 included)."""
    return model.arch() if hasattr(model, "arch") else config


class LMTask:
    """Next-token cross-entropy on a text corpus; held-out bits per byte every `lm.eval_every` steps."""

    recipe_schema = LMRecipe

    def __init__(self, recipe: LMRecipe, device: str) -> None:
        lm, t = recipe.lm, recipe.train
        self.recipe, self.device = recipe, device
        self.corpus = corpus = load_corpus(recipe)
        self.tok = tok = resolve_tokenizer(recipe, corpus)
        self.train_ids, self.val_ids = encode(tok, corpus.train), encode(tok, corpus.val)
        if len(self.train_ids) < lm.seq_len + 2 or len(self.val_ids) < lm.seq_len + 2:
            raise UserError(f"the corpus is shorter than one window of {lm.seq_len + 1} tokens",
                            where="[lm] seq_len", hint="use a shorter seq_len or more text")
        config = dict(recipe.model.config)
        config.setdefault("vocab_size", tok.get_vocab_size())
        if config["vocab_size"] != tok.get_vocab_size():
            raise UserError(f"model.config.vocab_size {config['vocab_size']} differs from the tokenizer's "
                            f"{tok.get_vocab_size()}", where="[model] config",
                            hint="leave vocab_size out of the recipe")
        self.config = config
        torch.manual_seed(t.seed)
        model = build_lm(recipe.model.name, recipe.model.kind, config)
        if getattr(model, "max_context", lm.seq_len) < lm.seq_len:
            raise UserError(f"seq_len {lm.seq_len} is longer than the model's context {model.max_context}",
                            where="[lm] seq_len")
        if t.init:
            from snnctl.lm.bundle import load_lm

            model.load_state_dict(load_lm(Path(t.init)).model.state_dict())
        self.model: torch.nn.Module = model.to(device)
        self.distiller = make_distiller(recipe.distill, distill_expect(corpus, tok, self.train_ids, lm.seq_len),
                                        device, load_lm_teacher)
        self.aligned = lm.windows == "aligned" or self.distiller is not None
        self.val_bpt = bytes_per_token(corpus.val, len(self.val_ids))
        self.total_steps = lm.steps

    def param_groups(self) -> list[dict[str, Any]]:
        """The model's own groups; an SSM's dynamics (A, dt) at their own smaller rate, as S4D advises."""
        t = self.recipe.train
        groups = model_param_groups(self.model, t.weight_decay)
        for group in groups:
            if group.get("name") == "ssm_dynamics":
                group["lr_scale"] = min(self.recipe.lm.ssm_lr, t.lr) / t.lr
        return groups

    def batch(self, step: int) -> torch.Tensor:
        """The offsets of the step's windows; `loss` reads their tokens (and teacher rows) from them."""
        L, t = self.recipe.lm.seq_len, self.recipe.train
        return batch_offsets(len(self.train_ids), L, t.batch_size, t.seed, step, self.aligned)

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, step: int,
             part: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        positions = batch[:, None] + torch.arange(self.recipe.lm.seq_len + 1)
        windows = self.train_ids[positions].to(self.device)
        logits = model(windows[:, :-1])
        flat = logits.reshape(-1, logits.shape[-1])
        loss = F.cross_entropy(flat, windows[:, 1:].reshape(-1))
        stats = {"loss": loss.item() * len(batch), "n": len(batch)}  # sums over windows: any split adds up
        if self.distiller is not None:
            loss, kl = self.distiller.loss(flat, loss, rows=positions[:, :-1], inputs=windows[:, :-1])
            if kl is not None:
                stats["kl"] = kl.item() * len(batch)
        return loss, stats

    def log_due(self, step: int) -> bool:
        return step == self.total_steps

    def summarise(self, step: int, window: dict[str, float]) -> dict[str, Any]:
        kl = {"kl": window["kl"] / window["n"]} if "kl" in window else {}
        return {"loss": window["loss"] / window["n"], **kl}

    def eval_due(self, step: int) -> bool:
        return step % self.recipe.lm.eval_every == 0 and step != self.total_steps

    def evaluate(self, model: torch.nn.Module, step: int) -> dict[str, Any]:
        lm = self.recipe.lm
        return {"val_bpb": score(unwrap(model), self.val_ids, lm.seq_len, self.val_bpt, limit=lm.eval_windows)["bpb"]}

    def finish(self, model: torch.nn.Module, out: Path, run: dict[str, Any]) -> dict[str, Any]:
        net, t, L = unwrap(model), self.recipe.train, self.recipe.lm.seq_len
        final = score(net, self.val_ids, L, self.val_bpt)
        wall = run["train_wall_s"]
        metrics: dict[str, Any] = {
            "val_bpb": final["bpb"], "val_loss": final["loss"], "val_tokens": final["tokens"],
            **{k: final[k] for k in ("firing_rate", "firing_rates", "spikes_per_token") if k in final},
            "params": sum(p.numel() for p in net.parameters()),
            "steps": self.total_steps, "tokens_seen": self.total_steps * t.batch_size * L,
            "train_wall_s": round(wall, 3),
            "train_tokens_per_s": round(run["trained_steps"] * t.batch_size * L / max(wall, 1e-9), 1),
            "resumed": run["resumed"],
        }
        net.cpu()
        save_bundle(out, net, self.manifest(net, metrics), extra={toks.FILENAME: toks.to_json(self.tok)})
        return metrics

    def manifest(self, net: torch.nn.Module, metrics: dict[str, Any]) -> dict[str, Any]:
        """The bundle's manifest: how to rebuild the model, its tokenizer, what it scored, how to chat."""
        recipe, corpus = self.recipe, self.corpus
        tokens = self.total_steps * recipe.train.batch_size * recipe.lm.seq_len
        manifest = make_manifest(
            zoo_name=recipe.model.name, zoo_config=manifest_config(net, self.config), kind="lm",
            T=None, tokenizer=toks.FILENAME, recipe=recipe.model_dump(mode="json"), seed=recipe.train.seed,
            metrics={"dataset": corpus.name, **metrics}, distilled=record(self.distiller),
        )
        manifest["lm"] = {"spiking": recipe.model.kind == "snn"}
        manifest["chat"] = {
            "mode": "dialogue" if corpus.chat else "continuation",
            "template": corpus.chat,
            "trained_on": f"{corpus.name} ({len(corpus.train.encode('utf-8')):,} bytes, {tokens:,} training tokens)",
            "instruction_tuned": False,
        }
        return manifest
