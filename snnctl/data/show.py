"""`snnctl data show` and `snnctl data list`: what a dataset holds, and which datasets there are.

`describe` works on any classification dataset `load_dataset` gives (registered or prepared) and adds
the manifest of a prepared one; `preview` draws what a person checks first: a grid of samples per class
for images, one sample's events for event data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnctl import registry
from snnctl.data import Dataset, load_dataset
from snnctl.data.prepared import MANIFEST, is_prepared, open_prepared
from snnctl.errors import UserError


def modality(ds: Dataset) -> str:
    """image [C, H, W] floats, events [T, 2, H, W], or text (integer word ids)."""
    if not ds.x_train.is_floating_point():
        return "text"
    return "events" if ds.x_train.ndim == 5 else "image" if ds.x_train.ndim == 4 else "features"


def describe(target: str) -> tuple[dict[str, Any], Dataset | None]:
    """Splits, class balance, shapes, dtypes and value ranges (and text lengths and examples); unlabelled
    prepared text and dialogues (no Dataset to load) are described from their manifest and rows alone."""
    if is_prepared(target) and not open_prepared(Path(target))["classes"]:
        manifest = open_prepared(Path(target))
        dtype = "list of strings (turns)" if manifest["modality"] == "dialogue" else "string"
        summary = {"name": manifest["name"], "modality": manifest["modality"], "num_classes": 0,
                   "splits": {k: {"examples": v["examples"], "classes": {}} for k, v in manifest["counts"].items()},
                   "x": {"shape": [], "dtype": dtype, "min": None, "max": None, "mean": None}}
        return {**summary, **_prepared_part(Path(target))}, None
    ds = load_dataset(target)
    if not isinstance(ds, Dataset):
        raise UserError(f"dataset '{target}' is a {type(ds).__name__}, not a labelled dataset", where=target,
                        hint="`data show` describes classification datasets")
    kind = modality(ds)
    summary: dict[str, Any] = {"name": ds.name, "modality": kind, "num_classes": ds.num_classes, "splits": {}}
    for split, y in (("train", ds.y_train), ("test", ds.y_test)):
        counts = torch.bincount(y, minlength=ds.num_classes).tolist()
        summary["splits"][split] = {"examples": len(y), "classes": dict(enumerate(counts))}
    x = ds.x_train
    summary["x"] = {"shape": list(ds.input_shape), "dtype": str(x.dtype).removeprefix("torch."),
                    "min": float(x.min()) if x.numel() else None, "max": float(x.max()) if x.numel() else None,
                    "mean": float(x.float().mean()) if x.numel() else None}
    if kind == "text":
        lengths = (ds.x_train != 0).sum(dim=1).float()
        summary["length"] = {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2),
                             "max": int(lengths.max()), "unit": "words (after truncation)"}
    if is_prepared(target):
        summary.update(_prepared_part(Path(target)))
    return summary, ds


def _prepared_part(folder: Path) -> dict[str, Any]:
    import datasets

    manifest = open_prepared(folder)
    part = {k: manifest[k] for k in ("format", "fingerprint", "split", "features", "source")}
    part["class_names"] = manifest["classes"]
    part["path"] = str(folder)
    if manifest["modality"] == "text":
        train = datasets.load_from_disk(str(folder / "hf"))["train"]
        texts = train["text"]
        words = np.array([len(t.split()) for t in texts])
        labels = train["label"][:3] if manifest["classes"] else [None] * len(texts[:3])
        part["examples"] = [{"text": t, "label": None if y is None else manifest["classes"][y]} for t, y in
                            zip(texts[:3], labels, strict=True)]
        part["words"] = {"min": int(words.min()), "mean": round(float(words.mean()), 2), "max": int(words.max())}
    if manifest["modality"] == "dialogue":
        part["dialogue"] = _dialogue_part(datasets.load_from_disk(str(folder / "hf")))
    return part


def _stats(values: Any) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.int64)
    if not arr.size:
        return {"min": None, "mean": None, "max": None}
    return {"min": int(arr.min()), "mean": round(float(arr.mean()), 2), "max": int(arr.max())}


def _dialogue_part(dd: Any, shown: int = 3, turns: int = 4) -> dict[str, Any]:
    """Turns per dialogue and characters per turn over every split (read through Arrow compute, no
    Python loop over rows), and the first turns of a few training dialogues."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tables = [s.with_format("arrow")[:] for s in dd.values()]  # a read, never a cache file in the folder
    column = pa.chunked_array([c for t in tables for c in t.column("turns").chunks], type=tables[0].schema.field(
        "turns").type)
    train = dd["train"]
    return {
        "roles": "turns alternate user/assistant, the user's first",
        "turns_per_dialogue": _stats(pc.list_value_length(column).to_numpy(zero_copy_only=False)),
        "chars_per_turn": _stats(pc.utf8_length(pc.list_flatten(column)).to_numpy(zero_copy_only=False)),
        "examples": [{"id": row["id"], "turns": row["turns"][:turns], "of": len(row["turns"])}
                     for row in train.select(range(min(shown, len(train))))],
    }


def preview(ds: Dataset | None, kind: str, out: Path, per_class: int = 8) -> Path | None:
    """A PNG: a grid of `per_class` training samples per class (images), or one sample's events
    (on events red, off events blue, summed over time). None for text."""
    if ds is None or kind not in ("image", "events"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind == "image":
        fig, axes = plt.subplots(ds.num_classes, per_class, figsize=(per_class, ds.num_classes), squeeze=False)
        for c in range(ds.num_classes):
            picks = torch.nonzero(ds.y_train == c).flatten()[:per_class]
            for j, ax in enumerate(axes[c]):
                ax.axis("off")
                if j < len(picks):
                    img = ds.x_train[picks[j]].numpy()
                    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            axes[c][0].set_title(str(c), fontsize=7, loc="left")
    elif kind == "events":
        frames = ds.x_train[0].sum(dim=0).numpy()  # [2, H, W]: off, on
        rgb = np.stack([frames[1], np.zeros_like(frames[0]), frames[0]], axis=-1)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(rgb / max(float(rgb.max()), 1.0))
        ax.set_title(f"sample 0 (class {int(ds.y_train[0])}): on red, off blue")
        ax.axis("off")
    else:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out


def listing(home: Path, paths: list[Path]) -> list[dict[str, Any]]:
    """Registered datasets (built-in or from a plugin package), then prepared ones under `home` and
    `paths` (a prepared folder, or a folder holding them); prepared ones are read from their manifest."""
    rows = [{"name": e.name, "kind": "built-in" if e.package == registry.BUILTIN else "plugin", "package": e.package,
             "path": None} for e in registry.entries("datasets").values()]
    for root in [home, *paths]:
        folders = [root] if is_prepared(root) else sorted(p for p in root.glob("*") if is_prepared(p))
        if not folders and root in paths:
            raise UserError("neither a prepared dataset nor a folder holding any", where=str(root))
        for folder in folders:
            try:
                m = json.loads((folder / MANIFEST).read_text())
                rows.append({"name": m["name"], "kind": "prepared", "package": None, "path": str(folder),
                             "format": m["format"], "examples": {s: sum(c.values()) for s, c in m["counts"].items()},
                             "fingerprint": m["fingerprint"][:12]})
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                rows.append({"name": folder.name, "kind": "prepared (damaged manifest)", "package": None,
                             "path": str(folder)})
    return rows
