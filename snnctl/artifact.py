"""The model bundle: `model.safetensors` + `snnctl.json`, how every command hands a model on.

Writes go to a temporary name and are renamed into place, weights first and manifest last, so an
interrupted command never leaves a bundle whose manifest describes other weights. Loading validates
the manifest (snnctl.manifest), then hands it to the loader its kind registered under the
`snnctl.bundles` entry points: this module builds ANN and SNN classifiers itself and knows the other
kinds (converted, lm, logic-gated, a plugin's) only through that registry. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from snnctl import manifest as M
from snnctl import registry
from snnctl.contracts import bundle_loader, task_of
from snnctl.errors import UserError
from snnctl.zoo import Network, build_network

FORMAT = M.FORMAT
FORMAT_VERSION = M.FORMAT_VERSION
WEIGHTS = "model.safetensors"
MANIFEST = "snnctl.json"
TASK_NOUNS = {"classify": "a classifier", "lm": "a language model"}
TASK_HINTS = {
    "classify": "classifiers are for bench, convert, calibrate and compile; train a language model with "
                "`snnctl train --recipe small-ssm` or chat-ssm",
    "lm": "language models are for `snnctl chat` and benchmarks/lm.py",
}


B = TypeVar("B", bound="Bundle")


@dataclass
class Bundle:
    """A loaded bundle: `manifest` is the JSON view many readers index, `info` the typed manifest."""

    path: Path
    manifest: dict[str, Any]
    model: Network
    info: M.Manifest

    @property
    def name(self) -> str:
        return self.info.zoo.name

    @property
    def size_bytes(self) -> int:
        return (self.path / WEIGHTS).stat().st_size

    @property
    def data(self) -> dict[str, Any] | None:
        """The [data] the model was trained on (a converted SNN: its ANN's, as conversion recorded it),
        so measuring it loads the same split, options and tokenizer."""
        trained = (self.manifest.get("recipe") or {}).get("data")
        return trained or (self.manifest.get("conversion") or {}).get("data")


make_manifest = M.build  # the keywords every writer uses; `save_bundle` validates the result


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
    """Write weights, then `extra` files (e.g. tokenizer.json), then the manifest that describes them.
    The manifest is validated (a version-1 dict migrated) before anything is written, and saved as v2."""
    out = Path(out)
    text = M.parse(manifest, where=str(out / MANIFEST)).to_json()
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a stale manifest must never describe new weights
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_atomic(out / WEIGHTS, save_safetensors(state, metadata={"format": "pt"}))
    for name, data in (extra or {}).items():
        write_atomic(out / name, data)
    write_atomic(out / MANIFEST, text.encode())
    return out


def update_manifest(path: Path, changes: dict[str, Any]) -> None:
    """Set top-level keys of a written bundle's manifest (e.g. a section robustify adds), validated as
    every manifest is and renamed into place, so the manifest is only ever written here."""
    data = {**read_info(path).as_dict(), **changes}
    write_atomic(Path(path) / MANIFEST, M.parse(data, where=str(Path(path) / MANIFEST)).to_json().encode())


def read_info(path: Path) -> M.Manifest:
    """The validated manifest of the bundle folder `path`; any fault is one UserError naming the file."""
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
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"manifest is not valid JSON ({err})", where=str(manifest_path)) from None
    except OSError as err:
        raise UserError(f"manifest cannot be read ({err.strerror})", where=str(manifest_path)) from None
    return M.parse(data, where=str(manifest_path))


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


def finish(path: Path, info: M.Manifest, model: Any, map_location: str = "cpu", bundle_type: type[B] = Bundle,
           **more: Any) -> B:
    """Load the bundle's weights into the model a loader built, and wrap both (every loader ends here);
    a kind that carries more (an LM's tokenizer) passes its Bundle subclass and the extra fields."""
    load_weights_into(model, read_weights(path, map_location), path)
    model.eval()
    return bundle_type(path=path, manifest=info.as_dict(), model=model, info=info, **more)


def build_classifier(info: M.Manifest) -> Network:
    """The ANN or SNN classifier a manifest describes, before its weights are loaded."""
    zoo = info.zoo
    try:
        return build_network(
            zoo.name, zoo.config, kind="ann" if info.kind == "ann" else "snn",
            neuron=info.neuron.model_dump() if info.neuron is not None else None,
            encoding=info.encoding or "direct", T=info.T or 1, activation=zoo.activation,
        )
    except (ValueError, RuntimeError) as err:  # e.g. a negative layer width; TypeError is the zoo's own
        raise UserError(f"manifest key 'zoo.config' does not build a '{zoo.name}' model: {first_line(err)}") from None


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


@bundle_loader("classify")
def load_classifier(path: Path, info: M.Manifest, map_location: str = "cpu") -> Bundle:
    """Loader of the `ann` and `snn` kinds."""
    return finish(path, info, build_classifier(info), map_location)


def load_bundle(path: Path | str, map_location: str = "cpu", expect: str | None = "classify") -> Bundle:
    """Load any bundle through its kind's registered loader. `expect` is the task the caller needs
    (`"classify"`, `"lm"`, or None for any); a bundle for another task is refused before it is built."""
    path = Path(path)
    info = read_info(path)
    loader = registry.load("bundles", info.loader)
    task = task_of(loader)
    if expect is not None and task != expect:
        raise UserError(f"this bundle is {TASK_NOUNS.get(task, task)}, not {TASK_NOUNS.get(expect, expect)}",
                        where=str(path), hint=TASK_HINTS.get(task))
    try:
        return loader(path, info, map_location)
    except UserError as err:  # name the bundle, whatever part of it the loader found at fault
        if err.where is not None and str(path) in err.where:
            raise
        where = str(path) if err.where is None else f"{path} {err.where}"
        raise UserError(err.what, where=where, hint=err.hint) from None
