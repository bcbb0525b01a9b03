"""Language-model bundles (kind `lm`): the usual model.safetensors + snnctl.json, plus tokenizer.json.

The manifest names the tokenizer file, says under `lm.spiking` which twin the weights are, and under
`chat` records how the model was trained: on dialogue with a chat template (then `snnctl chat` speaks
in turns), or on plain text (then it continues what you type, and says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import nn

from snnctl.artifact import Bundle, finish, load_bundle
from snnctl.contracts import bundle_loader
from snnctl.errors import UserError
from snnctl.lm import tokenizer as toks
from snnctl.lm.models import build_lm
from snnctl.manifest import Manifest


@dataclass
class LMBundle(Bundle):
    model: nn.Module  # type: ignore[assignment]  # a language model, not a classifier Network
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
    bundle = load_bundle(path, expect="lm")
    if not isinstance(bundle, LMBundle):
        raise UserError(f"bundle kind '{bundle.info.kind}' loads no tokenizer", where=str(path),
                        hint="its loader must return an LMBundle to be used as a language model")
    return bundle


@bundle_loader("lm")
def load_lm_bundle(path: Path, info: Manifest, map_location: str = "cpu") -> LMBundle:
    """Loader of the `lm` kind: the tokenizer must exist and fit the model's vocabulary."""
    if info.lm is None:
        raise UserError("manifest of a language model lacks 'lm'", where=str(path), hint="retrain the model")
    tok_name = info.tokenizer or toks.FILENAME
    if not (path / tok_name).is_file():
        raise UserError(f"{tok_name} is missing", where=str(path), hint="a language-model bundle keeps its tokenizer")
    tokenizer = toks.load(path / tok_name)
    model = build_lm(info.zoo.name, info.lm.twin, dict(info.zoo.config))
    vocab = int(getattr(model, "vocab_size", 0))
    if tokenizer.get_vocab_size() != vocab:
        raise UserError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the model has {vocab}",
                        where=str(path / tok_name), hint="put back the tokenizer.json the model was trained with")
    return finish(path, info, model, map_location, LMBundle, tokenizer=tokenizer)
