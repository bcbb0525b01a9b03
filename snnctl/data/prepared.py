"""Prepared datasets: `snnctl data prepare` writes them, every `--dataset` reads them.

A prepared dataset is a folder:

    DIR/
      snnctl-dataset.json   manifest: features and shapes, classes with counts per split, the split
                            rule and seed, the source files (size, sha256), the fingerprint, a sha256
                            of every data file and a checksum of the manifest itself
      hf/                   a Hugging Face DatasetDict (`save_to_disk`; Arrow, memory-mapped)

The fingerprint is a hash of what went in (format, options, split rule, sources' sha256), so the same
source prepared twice gives the same fingerprint. Opening the dataset checks the manifest checksum and
every data file's sha256 (tampering is an error), and re-hashes any source file that is still where it
was and whose size or mtime moved: a changed source is an error that says to prepare again.
It is written into a staging folder beside DIR and renamed into place, so nothing is half-written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnctl import __version__
from snnctl.data import Dataset
from snnctl.data.formats import FORMATS, READERS, Options, Read, bin_events, detect
from snnctl.errors import UserError
from snnctl.paths import check_out

MANIFEST = "snnctl-dataset.json"
VERSION = 1


@dataclass
class PrepareJob:
    """Everything `snnctl data prepare` is told; `format=None` detects it from the source."""

    source: str
    out: Path
    format: str | None = None
    name: str | None = None
    test_fraction: float = 0.2
    seed: int = 0
    text_column: str | None = None
    label_column: str | None = None
    events: str = "frames"
    T: int = 8


def is_prepared(path: Path | str) -> bool:
    return (Path(path) / MANIFEST).is_file()


def plan(job: PrepareJob) -> str:
    """Check every input before work starts; returns the format (detected when not given)."""
    if not 0 < job.test_fraction < 1:
        raise UserError(f"test fraction {job.test_fraction} is not between 0 and 1", where="--test-fraction")
    if job.format is not None and job.format not in FORMATS:
        raise UserError(f"unknown format '{job.format}'", where="--format", hint=f"one of {', '.join(FORMATS)}")
    check_out(job.out)
    if job.out.is_dir() and any(job.out.iterdir()) and not is_prepared(job.out):
        raise UserError("exists and is not a prepared dataset", where=str(job.out),
                        hint="choose a new folder; a prepared dataset there would be replaced")
    if job.format == "hf" and not Path(job.source).exists():
        return "hf"  # a hub id: the only source that is not a local path
    if not Path(job.source).exists():
        raise UserError("no such file or folder", where=job.source)
    if Path(job.source).resolve() == job.out.resolve():
        raise UserError("--out is the source itself", where=str(job.out), hint="write to a new folder")
    return job.format or detect(Path(job.source))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(fmt: str, job: PrepareJob, opts: Options) -> Read:
    from snnctl.data import tables

    if fmt == "hf":
        return tables.read_hf(job.source, opts)
    if fmt in tables.BUILDERS:
        return tables.read_table(Path(job.source), fmt, opts)
    return READERS[fmt](Path(job.source), opts)


def _split(read: Read, job: PrepareJob) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keep a train/test split the source gives; otherwise a seeded split, stratified by class if it can be."""
    import datasets

    s = read.splits
    if "train" in s and "test" in s:
        train = datasets.concatenate_datasets([s["train"], s["all"]]) if "all" in s else s["train"]
        return {"train": train, "test": s["test"]}, {"rule": "given by the source"}
    if "test" in s and len(s) == 1:
        raise UserError("the source has a test split but no training data", where=job.source)
    whole = datasets.concatenate_datasets(list(s.values())) if len(s) > 1 else next(iter(s.values()))
    rule = {"rule": "stratified", "test_fraction": job.test_fraction, "seed": job.seed}
    try:
        if "label" not in whole.column_names:
            raise ValueError("no labels")
        parts = whole.train_test_split(test_size=job.test_fraction, seed=job.seed, stratify_by_column="label")
    except ValueError:  # too few examples of a class to stratify, or no labels
        parts = whole.train_test_split(test_size=job.test_fraction, seed=job.seed)
        rule["rule"] = "random"
    return {"train": parts["train"], "test": parts["test"]}, rule


def _features(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, feature in ds.features.items():
        kind = type(feature).__name__
        if hasattr(feature, "shape") and hasattr(feature, "dtype"):
            out[key] = {"shape": list(feature.shape), "dtype": feature.dtype}
        elif kind == "ClassLabel":
            out[key] = {"classes": feature.num_classes}
        elif hasattr(feature, "feature") and hasattr(feature.feature, "dtype"):  # a list column (dialogue turns)
            out[key] = {"list_of": feature.feature.dtype}
        elif isinstance(feature, dict):
            out[key] = {"events": {k: getattr(getattr(v, "feature", v), "dtype", "?") for k, v in feature.items()}}
        else:
            out[key] = {"dtype": getattr(feature, "dtype", kind)}
    return out


def _counts(splits: dict[str, Any], classes: list[str]) -> dict[str, dict[str, int]]:
    out = {}
    for split, ds in splits.items():
        if "label" not in ds.column_names:
            out[split] = {"examples": len(ds)}
            continue
        counts = np.bincount(np.asarray(ds.with_format("numpy")["label"], dtype=np.int64), minlength=len(classes))
        out[split] = {c: int(n) for c, n in zip(classes, counts, strict=True)}
    return out


def _sources(read: Read, job: PrepareJob) -> list[dict[str, Any]]:
    root = Path(job.source) if Path(job.source).is_dir() else Path(job.source).parent
    rows = []
    for path in sorted(set(read.files)):
        stat = path.stat()
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        rows.append({"name": name, "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                     "sha256": sha256(path)})
    return rows


def _checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _data_files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted((folder / "hf").rglob("*")) if p.is_file()}


def prepare(job: PrepareJob, progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Read the source into a staging folder beside `job.out`, write the manifest, rename into place;
    `progress(n)` is told how many examples have been read. Returns the manifest."""
    import datasets

    fmt = plan(job)
    job.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{job.out.name}.staging-", dir=job.out.parent))
    datasets.disable_progress_bars()
    try:
        opts = Options(text_column=job.text_column, label_column=job.label_column, events=job.events, T=job.T,
                       cache_dir=staging, progress=progress)
        read = _read(fmt, job, opts)
        splits, split_rule = _split(read, job)
        datasets.DatasetDict(splits).save_to_disk(str(staging / "hf"))
        for tmp in staging.iterdir():
            if tmp.name != "hf":
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        options = {k: v for k, v in asdict(job).items() if k in ("text_column", "label_column", "events", "T")}
        if read.modality != "events":
            options = {k: v for k, v in options.items() if k not in ("events", "T")}
        sources = _sources(read, job)
        what = {"version": VERSION, "format": fmt, "options": options, "split": split_rule,
                "sources": [[s["name"], s["sha256"]] for s in sources] or [job.source]}
        manifest = {
            "kind": "snnctl-dataset", "version": VERSION, "name": job.name or job.out.name, "format": fmt,
            "modality": read.modality, "source": job.source, "options": options, "info": read.info,
            "features": _features(splits["train"]), "classes": read.classes, "counts": _counts(splits, read.classes),
            "split": split_rule, "sources": sources,
            "fingerprint": hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest(),
            "files": _data_files(staging), "snnctl_version": __version__,
        }
        manifest["checksum"] = _checksum(manifest)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap(staging, job.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        datasets.enable_progress_bars()
    return manifest


def _swap(staging: Path, out: Path) -> None:
    """Put the staging folder at `out`; a prepared dataset already there is replaced only at the end."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def open_prepared(folder: Path) -> dict[str, Any]:
    """The manifest of a prepared dataset, after checking it, its data files and its sources."""
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"not a prepared dataset (no {MANIFEST})", where=str(folder),
                        hint="make one with `snnctl data prepare SOURCE --out DIR`")
    try:
        manifest = json.loads(path.read_text())
        ok = isinstance(manifest, dict) and manifest.get("checksum") == _checksum(manifest)
    except (json.JSONDecodeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise UserError("manifest was modified after prepare (checksum mismatch)", where=str(path),
                        hint="prepare the dataset again")
    files = _data_files(folder)
    for name, digest in manifest["files"].items():
        if files.get(name) != digest:
            state = "is missing" if name not in files else "was modified after prepare (sha256 mismatch)"
            raise UserError(f"data file {state}", where=str(folder / name), hint="prepare the dataset again")
    extra = sorted(set(files) - set(manifest["files"]))
    if extra:
        raise UserError("data file not listed in the manifest", where=str(folder / extra[0]),
                        hint="prepare the dataset again")
    _check_sources(manifest)
    return manifest


def _check_sources(manifest: dict[str, Any]) -> None:
    """A source file still in place whose content changed means the prepared copy is stale."""
    for src in manifest["sources"]:
        path = Path(src["path"])
        if not path.is_file():
            continue  # the prepared copy stands on its own once the source is gone
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == (src["size"], src["mtime_ns"]):
            continue
        if stat.st_size != src["size"] or sha256(path) != src["sha256"]:
            raise UserError("source file changed since the dataset was prepared", where=str(path),
                            hint=f"run `snnctl data prepare {manifest['source']} --out ...` again")


def load_prepared(folder: Path, *, test_fraction: float | None = None, split_seed: int | None = None,
                  T: int | None = None, vocab_size: int = 16384, length: int = 48) -> Dataset:
    """A prepared dataset as tensors: images as floats in [0, 1] [N, C, H, W], event frames as counts
    [N, T, 2, H, W] (raw events binned into `T` steps here, default 8), labelled text as word ids of
    `length` with a vocabulary of the training split. The split is the one fixed at prepare time, so
    `test_fraction`/`split_seed` are accepted and do not apply."""
    import datasets

    manifest = open_prepared(folder)
    if manifest["modality"] == "dialogue":
        raise UserError("prepared dialogues have no labels; they train language models", where=str(folder),
                        hint='name the folder as data.name of a recipe with task = "lm"')
    if not manifest["classes"]:
        raise UserError("prepared text has no labels; classification needs a label column", where=str(folder),
                        hint="prepare it with --label-column")
    dd = datasets.load_from_disk(str(folder / "hf"))
    arrays = {split: _tensor(dd[split], manifest, T, folder) for split in ("train", "test")}
    labels = {split: torch.as_tensor(np.asarray(dd[split]["label"], dtype=np.int64)) for split in ("train", "test")}
    info: dict[str, Any] = {"prepared": str(folder), "fingerprint": manifest["fingerprint"]}
    if manifest["modality"] == "events":  # frames [N, T, 2, H, W]: train them with encoding "frames"
        info["steps"] = int(arrays["train"].shape[1])
    if manifest["modality"] == "text":
        from snnctl.data.sst2 import build_vocab, encode

        vocab = build_vocab(arrays["train"], vocab_size)
        arrays = {k: encode(v, vocab, length) for k, v in arrays.items()}
        info.update(vocab_size=vocab_size, length=length)
    return Dataset(name=manifest["name"], x_train=arrays["train"], y_train=labels["train"], x_test=arrays["test"],
                   y_test=labels["test"], num_classes=len(manifest["classes"]), info=info)


def _tensor(ds: Any, manifest: dict[str, Any], T: int | None, folder: Path) -> Any:
    if manifest["modality"] == "text":
        return list(ds["text"])
    if manifest["modality"] == "events" and manifest["info"].get("events") == "raw":
        steps = T or 8
        frames = np.stack([bin_events(ev, steps) for ev in ds["x"]]) if len(ds) else np.zeros((0, steps, 2, 34, 34))
        return torch.from_numpy(frames.astype(np.float32))
    if T is not None and manifest["modality"] == "events" and manifest["info"].get("T") != T:
        raise UserError(f"frames were binned into T={manifest['info'].get('T')} steps at prepare time, not {T}",
                        where=str(folder), hint="prepare with --events raw to choose T when loading")
    x = _array(ds, "x")
    scale = 255.0 if manifest["modality"] == "image" else 1.0
    return torch.from_numpy(x.astype(np.float32) / scale)


def _array(ds: Any, column: str) -> np.ndarray:
    """A fixed-shape array column as one numpy array, straight from Arrow's flat buffer (zero-copy where it
    can be: the row-by-row path of `with_format("numpy")` takes seconds per 10k images)."""
    import pyarrow as pa

    feature = ds.features[column]
    col = ds.flatten_indices().data.column(column) if ds._indices is not None else ds.data.column(column)
    flat = col.combine_chunks()
    if isinstance(flat, pa.ExtensionArray):
        flat = flat.storage
    while pa.types.is_list(flat.type) or pa.types.is_fixed_size_list(flat.type) or pa.types.is_large_list(flat.type):
        flat = flat.flatten()
    return flat.to_numpy(zero_copy_only=False).reshape(len(ds), *feature.shape)
