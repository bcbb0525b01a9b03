"""Where the ANN comes from: a zoo name (+ weights), an snnctl ANN bundle, or a Hugging Face model.

The manifest of a converted bundle records the source as data (`{"type": "zoo" | "hf", ...}`), so
loading it rebuilds the same ANN structure, rewrites it again (the rewrite is deterministic) and
loads the converted weights and thresholds over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from snnctl import registry
from snnctl.data import Dataset
from snnctl.errors import UserError

MANIFEST = "snnctl.json"


@dataclass
class Source:
    body: nn.Module  # the ANN body: [B, ...] -> logits
    record: dict[str, Any]  # how to rebuild it (manifest "conversion.source")
    weights: str  # where the weights came from, in words, for the report
    parent: str | None = None
    data: dict[str, Any] | None = None  # the recipe's [data] section, when known


class HFLogits(nn.Module):
    """A Hugging Face image classifier as a plain `pixel_values -> logits` module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if isinstance(out, (Tensor, torch.fx.Proxy)):  # traced: the adapters already give the logits
            return out
        return out.logits


def _hf_from_config(config: dict[str, Any]) -> nn.Module:
    from transformers import AutoConfig, AutoModelForImageClassification

    cfg = dict(config)
    model_type = cfg.pop("model_type")
    return AutoModelForImageClassification.from_config(AutoConfig.for_model(model_type, **cfg))


def load_hf(name: str) -> Source:
    """A transformers image-classification model from a local folder or a hub id (never remote code)."""
    try:
        from transformers import AutoModelForImageClassification
    except ImportError:  # pragma: no cover - transformers is a dependency
        raise UserError("Hugging Face models need the transformers package", hint="pip install transformers") from None
    try:
        model = AutoModelForImageClassification.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"cannot load a Hugging Face image classifier ({first})", where=name,
                        hint="give a local folder written by save_pretrained, or a hub id when online") from None
    model.eval()
    record = {"type": "hf", "name": name, "config": model.config.to_dict()}
    return Source(body=HFLogits(model), record=record, weights=f"Hugging Face {name}")


def _state_for(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accept a Network state dict ('body.'-prefixed) or a bare body state dict."""
    keys = set(model.state_dict())
    if set(state) == keys:
        return state
    prefixed = {f"body.{k}": v for k, v in state.items()}
    return prefixed if set(prefixed) == keys else state


def load_weights(model: nn.Module, weights: Path) -> str:
    from snnctl.artifact import load_bundle

    if weights.is_dir():
        bundle = load_bundle(weights)
        state = bundle.model.state_dict()
        what = f"bundle {weights}"
    else:
        if not weights.is_file():
            raise UserError("weights file not found", where=str(weights), hint="give a .safetensors file or a bundle")
        try:
            state = load_file(weights)
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"not a readable safetensors file ({err})", where=str(weights),
                            hint="weights are read from safetensors only; pickles are never loaded") from None
        what = f"file {weights}"
    try:
        model.load_state_dict(_state_for(model, state), strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise UserError(f"weights do not fit the model: {first}", where=str(weights),
                        hint="set the zoo config with --set (e.g. --set stem_type=small)") from None
    return what


def zoo_source(
    name: str, config: dict[str, Any], activation: dict[str, Any] | None, weights: Path | None, ds: Dataset | None
) -> Source:
    from snnctl.zoo import build_network, fill_shape_defaults

    if ds is not None:
        config = fill_shape_defaults(name, config, ds)
    torch.manual_seed(0)
    net = build_network(name, config, kind="ann", activation=activation)
    what = load_weights(net, weights) if weights is not None else "random init (no --weights given)"
    record = {"type": "zoo", "name": name, "config": config, "activation": activation}
    return Source(body=net.body.eval(), record=record, weights=what)


def bundle_source(path: Path) -> Source:
    from snnctl.artifact import load_bundle

    bundle = load_bundle(path)
    kind = bundle.manifest["kind"]
    if kind != "ann":
        raise UserError(f"this bundle is already an SNN (kind '{kind}')", where=str(path),
                        hint="convert the ANN bundle it came from")
    if bundle.manifest.get("logic_gated"):
        raise UserError("this ANN is logic-gated (ternary, float weights gone); conversion needs float layers",
                        where=str(path), hint="convert the float ANN it came from, then robustify the SNN")
    zoo = bundle.manifest["zoo"]
    record = {"type": "zoo", "name": zoo["name"], "config": zoo.get("config", {}), "activation": zoo.get("activation")}
    data = (bundle.manifest.get("recipe") or {}).get("data")
    return Source(body=bundle.model.body.eval(), record=record, weights=f"bundle {path}", parent=str(path), data=data)


def resolve(
    model: str, weights: Path | None = None, config: dict[str, Any] | None = None, ds: Dataset | None = None
) -> Source:
    """MODEL may be an snnctl bundle folder, a Hugging Face folder or id, or a zoo name."""
    path = Path(model)
    if path.is_dir() and (path / MANIFEST).is_file():
        if weights is not None:
            raise UserError("--weights is for zoo names; a bundle brings its own weights", where=str(weights))
        return bundle_source(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf(model)
    if model in registry.entries("models"):
        return zoo_source(model, dict(config or {}), None, weights, ds)
    if path.exists():
        raise UserError("not a model folder: no snnctl.json (bundle) or config.json (Hugging Face)", where=model)
    if "/" in model:
        return load_hf(model)
    raise UserError(f"unknown model '{model}'",
                    hint=f"give a zoo name ({', '.join(registry.entries('models'))}), an ANN bundle folder, "
                    "or a Hugging Face model folder or id")


def rebuild(record: dict[str, Any]) -> nn.Module:
    """The ANN body a converted bundle was made from (structure only; weights come from the bundle)."""
    if record.get("type") == "hf":
        return HFLogits(_hf_from_config(record["config"])).eval()
    if record.get("type") == "zoo":
        from snnctl.zoo import build_network

        return build_network(record["name"], record["config"], kind="ann", activation=record.get("activation")).body
    raise UserError(f"unknown conversion source type {record.get('type')!r}")
