"""Precomputed teacher logits on disk: safetensors shards and an index (`logits.json`).

A folder holds one row per training example (classification) or per token position of every aligned
training window (language models), in order. A row is either the full logits (few classes) or the
teacher's top-K logits (float16) with their indices and the log-normaliser of the full distribution at
the temperature the folder is meant for, so the probability mass outside the top K is known exactly.

Shards are written to a temporary name and renamed; `progress.json` lists the finished ones, so an
interrupted preparation resumes where it stopped. `logits.json` is written last: a folder without it
is unfinished and is refused. Reads are memory-mapped (numpy over the safetensors byte buffer), so a
batch touches only its own rows.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as save_safetensors

from snnctl.artifact import write_atomic
from snnctl.data.prepared import sha256
from snnctl.errors import UserError

INDEX = "logits.json"
PROGRESS = "progress.json"
FORMAT = 1
DTYPES = {"F16": np.float16, "F32": np.float32, "I16": np.int16, "I32": np.int32}


@dataclass(frozen=True)
class TeacherRows:
    """Teacher outputs for a batch of rows: `full` logits [N, C], or top-K `values`/`indices` [N, K] and the
    full distribution's log-normaliser `lse` [N] at the folder's temperature."""

    full: torch.Tensor | None = None
    values: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    lse: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> TeacherRows:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return TeacherRows(move(self.full), move(self.values), move(self.indices), move(self.lse))


def top_k_rows(logits: torch.Tensor, k: int | None, temperature: float) -> dict[str, torch.Tensor]:
    """What a shard stores for these teacher logits [N, C]: all of them (k None) or the top k with the
    log-normaliser at `temperature`."""
    logits = logits.float()
    if k is None:
        return {"logits": logits.contiguous()}
    values, indices = logits.topk(k, dim=-1)
    index_dtype = torch.int16 if logits.shape[-1] <= 32767 else torch.int32
    return {"values": values.half().contiguous(), "indices": indices.to(index_dtype).contiguous(),
            "lse": torch.logsumexp(logits / temperature, dim=-1).contiguous()}


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


class LogitWriter:
    """Writes the shards of one preparation job into `out`, skipping those a previous run of the same
    job (same `job` key) finished. `finish(manifest)` writes the index that makes the folder usable."""

    def __init__(self, out: Path, job: dict[str, Any], shard_rows: int) -> None:
        self.out, self.job, self.shard_rows = out, job, shard_rows
        if (out / INDEX).exists():
            raise UserError("the output folder already holds prepared logits", where=str(out / INDEX),
                            hint="give a new --out, or delete the folder to prepare again")
        self.done: list[dict[str, Any]] = []
        progress = out / PROGRESS
        if progress.exists():
            saved = json.loads(progress.read_text())
            if saved.get("job") == job:
                self.done = [s for s in saved["shards"] if _intact(out, s)]
        out.mkdir(parents=True, exist_ok=True)

    def pending(self, total_rows: int) -> Iterator[tuple[int, int, int]]:
        """(shard number, first row, end row) of every shard still to write."""
        finished = {s["file"] for s in self.done}
        for i, start in enumerate(range(0, total_rows, self.shard_rows)):
            if shard_name(i) not in finished:
                yield i, start, min(start + self.shard_rows, total_rows)

    def write(self, i: int, start: int, tensors: dict[str, torch.Tensor], extra: dict[str, Any] | None = None) -> None:
        path = self.out / shard_name(i)
        write_atomic(path, save_safetensors(tensors))
        rows = len(next(iter(tensors.values())))
        self.done.append({"file": path.name, "rows": [start, start + rows], "bytes": path.stat().st_size,
                          "sha256": sha256(path), **(extra or {})})
        self.done.sort(key=lambda s: s["rows"][0])
        write_atomic(self.out / PROGRESS, json.dumps({"job": self.job, "shards": self.done}).encode())

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        index = {"format": FORMAT, **manifest, "shards": self.done}
        write_atomic(self.out / INDEX, json.dumps(index, indent=2).encode())
        (self.out / PROGRESS).unlink(missing_ok=True)
        return index


def _intact(folder: Path, shard: dict[str, Any]) -> bool:
    path = folder / shard["file"]
    return path.is_file() and path.stat().st_size == shard["bytes"]


def _mapped(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only memory-mapped numpy arrays."""
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    base = 8 + length
    arrays = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        arrays[name] = np.memmap(path, dtype=DTYPES[spec["dtype"]], mode="r", offset=base + start,
                                 shape=tuple(spec["shape"])) if end > start else np.zeros(spec["shape"])
    return arrays


class LogitStore:
    """A finished logits folder, checked (every shard present, of its recorded size and checksum) and
    mapped; `rows(ids)` gathers teacher outputs for row numbers."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = folder = Path(folder)
        index = folder / INDEX
        if not index.is_file():
            unfinished = (folder / PROGRESS).exists()
            raise UserError("the logits folder is unfinished" if unfinished else "no prepared logits here",
                            where=str(folder),
                            hint="run `snnctl distill prepare` again with the same options to finish it" if unfinished
                            else "prepare them with `snnctl distill prepare --teacher T --dataset D --out DIR`")
        try:
            self.manifest: dict[str, Any] = json.loads(index.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError("logits.json is not valid JSON", where=str(index),
                            hint="prepare the logits again") from None
        if self.manifest.get("format") != FORMAT:
            raise UserError(f"logits format {self.manifest.get('format')!r} is not {FORMAT}", where=str(index),
                            hint="prepare the logits again with this version of snnctl")
        self.starts, self.arrays = [], []
        for shard in self.manifest["shards"]:
            path = folder / shard["file"]
            if not _intact(folder, shard) or sha256(path) != shard["sha256"]:
                raise UserError(f"shard {shard['file']} is missing, truncated or changed", where=str(path),
                                hint="delete the folder and prepare the logits again")
            self.starts.append(shard["rows"][0])
            self.arrays.append(_mapped(path))
        self.rows_total = int(self.manifest["rows"])
        covered = sum(s["rows"][1] - s["rows"][0] for s in self.manifest["shards"])
        if covered != self.rows_total:
            raise UserError(f"the shards hold {covered} rows, the index says {self.rows_total}", where=str(index),
                            hint="delete the folder and prepare the logits again")

    @property
    def top_k(self) -> int | None:
        return self.manifest.get("top_k")

    def rows(self, ids: torch.Tensor) -> TeacherRows:
        """Teacher outputs for row numbers `ids` (any shape; rows come back flattened, in order)."""
        flat = ids.reshape(-1).cpu().numpy()
        shard = np.searchsorted(np.asarray(self.starts), flat, side="right") - 1
        names = ("logits",) if self.top_k is None else ("values", "indices", "lse")
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        order = np.argsort(shard, kind="stable")
        for s in np.unique(shard):
            local = flat[order][shard[order] == s] - self.starts[s]
            for n in names:
                parts[n].append(np.asarray(self.arrays[s][n][local]))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        got = {n: torch.from_numpy(np.concatenate(parts[n])[inverse]) for n in names}
        if self.top_k is None:
            return TeacherRows(full=got["logits"].float())
        return TeacherRows(values=got["values"].float(), indices=got["indices"].long(), lse=got["lse"].float())
