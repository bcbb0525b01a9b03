"""Language-model bundles: the usual model.safetensors + snnctl.json, plus tokenizer.json.

The manifest says `"task": "lm"`, names the tokenizer file, and under `chat` records how the model
was trained: on dialogue with a chat template (then `snnctl chat` speaks in turns), or on plain text
(then it continues what you type, and says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import nn

from snnctl.artifact import load_weights_into, read_manifest, read_weights
from snnctl.errors import UserError
from snnctl.lm import tokenizer as toks
from snnctl.lm.models import build_lm


@dataclass
class LMBundle:
    path: Path
    manifest: dict[str, Any]
    model: nn.Module
    tokenizer: Tokenizer

    @property
    def chat(self) -> dict[str, Any]:
        return self.manifest.get("chat") or {}

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_lm(path: Path | str) -> LMBundle:
    """Load a language-model bundle; a classifier bundle or a tokenizer that does not fit the model's
    vocabulary is a user error naming the bundle."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("task") != "lm":
        raise UserError("this bundle is not a language model", where=str(path),
                        hint="train one with `snnctl train --recipe small-ssm` or chat-ssm")
    tok_name = manifest.get("tokenizer") or toks.FILENAME
    if not (path / tok_name).is_file():
        raise UserError(f"{tok_name} is missing", where=str(path), hint="a language-model bundle keeps its tokenizer")
    tokenizer = toks.load(path / tok_name)
    zoo = manifest["zoo"]
    try:
        model = build_lm(zoo["name"], manifest["kind"], dict(zoo.get("config") or {}))
    except UserError as err:
        raise UserError(err.what, where=str(path), hint=err.hint) from None
    vocab = int(getattr(model, "vocab_size", 0))
    if tokenizer.get_vocab_size() != vocab:
        raise UserError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the model has {vocab}",
                        where=str(path / tok_name), hint="put back the tokenizer.json the model was trained with")
    load_weights_into(model, read_weights(path), path)
    model.eval()
    return LMBundle(path=path, manifest=manifest, model=model, tokenizer=tokenizer)
