"""Classifier teachers for distillation: an snnctl bundle, or a Hugging Face classifier (local folder or hub id).

Any classifier bundle teaches: an ANN as usual, and an SNN or converted bundle too (its logits are its
readout over T steps), since a teacher is only asked for logits. Hugging Face image classifiers get the
dataset's tensors as `pixel_values`, sequence classifiers its token ids as `input_ids` (so the model must
have been trained on the same ids, e.g. one built from a config here). Remote code stays off unless asked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from snnctl.artifact import MANIFEST, WEIGHTS, load_bundle
from snnctl.data.prepared import sha256
from snnctl.errors import UserError
from snnctl.training.distill import Teacher

HF_HEADS = ("ForImageClassification", "ForSequenceClassification")


def hf_fingerprint(name: str) -> str:
    """A local folder: sha256 over its weight files; a hub id: the id and the commit it resolved to."""
    folder = Path(name)
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            digest.update(sha256(path).encode())
        return digest.hexdigest()
    return f"hub:{name}"


def hf_config(name: str, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"cannot read a Hugging Face model config ({first})", where=name,
                        hint="give an snnctl bundle, a folder written by save_pretrained, or a hub id when online"
                        ) from None


def load_hf_classifier(name: str, device: str, trust_remote_code: bool) -> Teacher:
    import transformers

    config = hf_config(name, trust_remote_code)
    arch = next((a for a in config.architectures or [] if a.endswith(HF_HEADS)), None)
    if arch is None:
        raise UserError(f"the Hugging Face model ({', '.join(config.architectures or ['no architecture'])}) is not "
                        "an image or sequence classifier", where=name,
                        hint="a classifier teacher ends in ForImageClassification or ForSequenceClassification")
    auto = (transformers.AutoModelForImageClassification if arch.endswith(HF_HEADS[0])
            else transformers.AutoModelForSequenceClassification)
    model = auto.from_pretrained(name, trust_remote_code=trust_remote_code).eval().to(device)
    if arch.endswith(HF_HEADS[0]):
        def forward(x: torch.Tensor) -> torch.Tensor:
            return model(pixel_values=x).logits
    else:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return model(input_ids=x, attention_mask=(x != 0).long()).logits
    return Teacher(forward, source=name, fingerprint=hf_fingerprint(name), kind=f"hf:{arch}")


def load_classifier_teacher(name: str, device: str, trust_remote_code: bool = False) -> Teacher:
    """The teacher named on the command line or in [distill] teacher."""
    path = Path(name)
    if (path / MANIFEST).is_file():
        bundle = load_bundle(path, expect="classify")
        model = bundle.model.eval().to(device)
        return Teacher(model, source=str(path), fingerprint=sha256(path / WEIGHTS), kind=bundle.info.kind)
    check_hf_name(name)
    return load_hf_classifier(name, device, trust_remote_code)


def check_hf_name(name: str) -> None:
    """What is not a bundle must be a save_pretrained folder, or could be a hub id (`org/name`)."""
    path = Path(name)
    if not path.exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise UserError("teacher not found", where=name, hint="check the path (a bundle or save_pretrained folder)")
    if path.exists() and not (path / "config.json").is_file():
        raise UserError("the teacher is neither an snnctl bundle nor a Hugging Face folder", where=name,
                        hint="give a bundle folder (snnctl.json), a save_pretrained folder (config.json) or a hub id")
