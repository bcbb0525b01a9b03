"""Language-model teachers for distillation: an snnctl LM bundle, or a Hugging Face causal LM (folder or hub id).

The teacher brings its tokenizer; a student must read the same tokens, so the tokenizer's fingerprint
(sha256 of its JSON) is recorded with the logits and checked against the student's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tokenizers import Tokenizer

from snnctl.artifact import MANIFEST, WEIGHTS
from snnctl.data.prepared import sha256
from snnctl.errors import UserError
from snnctl.lm import tokenizer as toks
from snnctl.lm.bundle import load_lm
from snnctl.training.distill import Teacher
from snnctl.training.teacher import check_hf_name, hf_config, hf_fingerprint


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    return hashlib.sha256(toks.to_json(tok)).hexdigest()


def hf_tokenizer(name: str) -> Tokenizer:
    """The folder's tokenizer.json, else the fast tokenizer transformers resolves for a hub id."""
    if (Path(name) / toks.FILENAME).is_file():
        return toks.load(Path(name) / toks.FILENAME)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name).backend_tokenizer
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"cannot load the teacher's tokenizer ({str(err).splitlines()[0]})", where=name,
                        hint="put its tokenizer.json beside the weights") from None


def load_lm_teacher(name: str, device: str, trust_remote_code: bool = False) -> Teacher:
    """The teacher named on the command line or in [distill] teacher, with its tokenizer."""
    path = Path(name)
    if (path / MANIFEST).is_file():
        bundle = load_lm(path)
        model = bundle.model.eval().to(device)
        return Teacher(model, source=str(path), fingerprint=sha256(path / WEIGHTS), kind="lm",
                       tokenizer=tokenizer_fingerprint(bundle.tokenizer),
                       max_context=getattr(model, "max_context", None), extra={"tokenizer": bundle.tokenizer})
    check_hf_name(name)
    config = hf_config(name, trust_remote_code)
    if not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in config.architectures or []):
        raise UserError(f"the Hugging Face model ({', '.join(config.architectures or ['no architecture'])}) is not a "
                        "causal language model", where=name, hint="a language-model teacher ends in ForCausalLM")
    from transformers import AutoModelForCausalLM

    tok = hf_tokenizer(name)
    model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=trust_remote_code).eval().to(device)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids).logits

    context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return Teacher(forward, source=name, fingerprint=hf_fingerprint(name), kind="hf:causal-lm",
                   tokenizer=tokenizer_fingerprint(tok), max_context=context, extra={"tokenizer": tok})
