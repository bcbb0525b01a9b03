"""The model bundle: `model.safetensors` + `snnctl.json`, how every command hands a model on.

Writes go to a temporary name and are renamed into place, weights first and manifest last, so an
interrupted command never leaves a bundle whose manifest describes other weights. Loading rebuilds
the model from the zoo name and config, then loads the tensors; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from snnctl import __version__
from snnctl.errors import UserError
from snnctl.robust.ternary import prepare_logic_gated
from snnctl.zoo import Network, build_network

FORMAT = "snnctl-bundle"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "snnctl.json"
KINDS = ("ann", "snn", "converted")


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]
    model: Network

    @property
    def name(self) -> str:
        return str(self.manifest["zoo"]["name"])

    @property
    def size_bytes(self) -> int:
        return (self.path / WEIGHTS).stat().st_size


def make_manifest(
    *,
    zoo_name: str,
    zoo_config: dict[str, Any],
    kind: str,
    neuron: dict[str, Any] | None = None,
    T: int | None = None,
    encoding: str | None = None,
    tokenizer: str | None = None,
    parent: str | None = None,
    recipe: dict[str, Any] | None = None,
    seed: int | None = None,
    metrics: dict[str, Any] | None = None,
    logic_gated: bool = False,
    activation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    spiking = kind != "ann"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "zoo": {"name": zoo_name, "config": zoo_config, **({"activation": activation} if activation else {})},
        "kind": kind,
        "neuron": neuron if spiking else None,
        "T": T if spiking else None,
        "encoding": encoding if spiking else None,
        "tokenizer": tokenizer,
        "parent": parent,
        "recipe": recipe,
        "seed": seed,
        "metrics": metrics or {},
        "logic_gated": logic_gated,
    }


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(out: Path, model: torch.nn.Module, manifest: dict[str, Any],
                extra: dict[str, bytes] | None = None) -> Path:
    """Write weights, then `extra` files (e.g. tokenizer.json), then the manifest that describes them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a stale manifest must never describe new weights
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_atomic(out / WEIGHTS, save_safetensors(state, metadata={"format": "pt"}))
    for name, data in (extra or {}).items():
        write_atomic(out / name, data)
    write_atomic(out / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return out


def read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise UserError("bundle not found", where=where, hint="give the folder a command wrote with --out")
    if not path.is_dir():
        raise UserError("not a bundle folder", where=where, hint=f"a bundle is a folder with {MANIFEST}")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"not an snnctl bundle: {MANIFEST} is missing", where=where)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"manifest is not valid JSON ({err})", where=str(manifest_path)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"manifest is not an {FORMAT} manifest", where=str(manifest_path))
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"manifest format version {version!r} is not supported (this snnctl reads {FORMAT_VERSION})",
            where=str(manifest_path),
            hint="upgrade snnctl" if isinstance(version, int) and version > FORMAT_VERSION else None,
        )
    for key in ("zoo", "kind"):
        if key not in manifest:
            raise UserError(f"manifest lacks '{key}'", where=str(manifest_path))
    return manifest


def read_weights(path: Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    weights_path = Path(path) / WEIGHTS
    if not weights_path.is_file():
        raise UserError(f"{WEIGHTS} is missing", where=str(path))
    try:
        return load_file(weights_path, device=map_location)
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"corrupt weights ({err})", where=str(weights_path)) from None


def load_weights_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise UserError(f"weights do not match the model the manifest describes: {first}", where=str(path)) from None


def load_bundle(path: Path | str, map_location: str = "cpu") -> Bundle:
    """Load a classifier bundle (ANN, SNN or converted); language models load with snnctl.lm.bundle."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("task") == "lm":
        raise UserError("this bundle is a language model, not a classifier", where=str(path),
                        hint="language models are for `snnctl chat` and benchmarks/lm.py")
    state = read_weights(path, map_location)
    zoo = manifest["zoo"]
    try:
        if manifest["kind"] == "converted":
            from snnctl.conversion.convert import build_converted

            model = build_converted(manifest)
        else:
            model = build_network(
                zoo["name"],
                zoo.get("config", {}),
                kind="ann" if manifest["kind"] == "ann" else "snn",
                neuron=manifest.get("neuron"),
                encoding=manifest.get("encoding") or "direct",
                T=manifest.get("T") or 1,
                activation=zoo.get("activation"),
            )
        if manifest.get("logic_gated"):
            prepare_logic_gated(model.body)
            model.register_buffer("readout_scale", torch.ones(()))
    except UserError as err:
        raise UserError(err.what, where=str(path), hint=err.hint) from None
    load_weights_into(model, state, path)
    model.eval()
    return Bundle(path=path, manifest=manifest, model=model)
