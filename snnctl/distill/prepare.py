"""`snnctl distill prepare`: run a teacher once over a dataset and store its logits for training.

Rows are what the student's task will ask for (snnctl.training.classify / snnctl.lm.task
`distill_expect`): one per training example, or one per position of every aligned training window of
a text corpus. The logits folder (snnctl.training.logits) records the teacher, the data's fingerprint,
the tokenizer's, K and the temperature, so a student on other data or tokens is refused.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snnctl.data import Dataset, load_dataset
from snnctl.errors import UserError
from snnctl.lm.corpus import TextCorpus
from snnctl.lm.task import distill_expect as lm_expect
from snnctl.lm.task import encode
from snnctl.lm.teacher import load_lm_teacher
from snnctl.paths import check_out
from snnctl.training.classify import distill_expect as classify_expect
from snnctl.training.distill import Teacher, check_reads
from snnctl.training.logits import LogitWriter, top_k_rows
from snnctl.training.teacher import load_classifier_teacher

FULL_UP_TO = 64  # classes stored in full by default; larger output layers (vocabularies) keep the top K
DEFAULT_TOP_K = 32  # benchmarks/distill.py: the measured mass this keeps is in README "distill"
MASS_KS = (1, 2, 4, 8, 16, 32, 64, 128)  # K values whose kept mass is measured on every row


@dataclass(frozen=True)
class PrepareJob:
    teacher: str
    dataset: str
    out: Path
    top_k: int | str | None = "auto"  # "auto": full for few classes, DEFAULT_TOP_K otherwise; None: full
    temperature: float = 4.0
    batch_size: int = 64
    device: str = "cpu"
    seq_len: int | None = None
    split: dict[str, Any] = field(default_factory=dict)  # test_fraction and split_seed, where given
    options: dict[str, Any] = field(default_factory=dict)  # the dataset's own options (a recipe's data.options)
    trust_remote_code: bool = False
    shard_rows: int = 1 << 16


@dataclass
class Plan:
    """What one preparation runs: the teacher, the rows the student will read, and how to get inputs."""

    teacher: Teacher
    expect: dict[str, Any]
    unit: int  # rows per teacher input (1 example, or the seq_len positions of a window)
    inputs: Callable[[int, int], torch.Tensor]  # teacher inputs of examples/windows [a, b)
    record: dict[str, Any]


def classify_plan(job: PrepareJob, ds: Dataset) -> Plan:
    teacher = load_classifier_teacher(job.teacher, job.device, job.trust_remote_code)
    expect = classify_expect(ds)
    check_reads(teacher, expect, job.device, where=job.teacher)
    return Plan(teacher, expect, 1, lambda a, b: ds.x_train[a:b], {"name": ds.name,
                "prepared_fingerprint": ds.info.get("fingerprint")})


def lm_plan(job: PrepareJob, corpus: TextCorpus) -> Plan:
    teacher = load_lm_teacher(job.teacher, job.device, job.trust_remote_code)
    L = job.seq_len or min(teacher.max_context or 256, 256)
    if teacher.max_context is not None and teacher.max_context < L:
        raise UserError(f"--seq-len {L} is longer than the teacher's context {teacher.max_context}", where="--seq-len")
    ids = encode(teacher.extra["tokenizer"], corpus.train)
    if len(ids) < L + 2:
        raise UserError(f"the corpus is shorter than one window of {L + 1} tokens", where=job.dataset,
                        hint="use a shorter --seq-len")
    expect = lm_expect(corpus, teacher.extra["tokenizer"], ids, L)
    check_reads(teacher, expect, job.device, where=job.teacher)

    def windows(a: int, b: int) -> torch.Tensor:
        return ids[torch.arange(a, b)[:, None] * L + torch.arange(L)]

    return Plan(teacher, expect, L, windows, {"name": corpus.name})


def resolve_top_k(requested: int | str | None, classes: int) -> int | None:
    if requested == "auto":
        return None if classes <= FULL_UP_TO else DEFAULT_TOP_K
    if isinstance(requested, int) and requested > classes:
        raise UserError(f"--top-k {requested} is larger than the teacher's {classes} outputs", where="--top-k",
                        hint=f"use at most {classes}, or --top-k full")
    return None if requested is None or requested == classes else int(requested)


def mass_kept(logits: torch.Tensor, temperature: float) -> dict[str, float]:
    """Sums over rows of the teacher probability the top K keep, at T=1 and at the temperature."""
    sums = {}
    for name, t in (("T1", 1.0), ("T", temperature)):
        probs = (logits / t).softmax(-1).sort(dim=-1, descending=True).values.cumsum(-1)
        for k in MASS_KS:
            if k < logits.shape[-1]:
                sums[f"{name}_k{k}"] = float(probs[:, k - 1].sum())
    return sums


def prepare(job: PrepareJob, progress: Callable[[int, int], None] = lambda done, total: None) -> dict[str, Any]:
    """Write the logits folder `job.out` (resuming a run of the same job) and return its index."""
    out = check_out(job.out)
    data = load_dataset(job.dataset, **job.split, **job.options)
    plan = lm_plan(job, data) if isinstance(data, TextCorpus) else classify_plan(job, data)
    expect, unit = plan.expect, plan.unit
    k = resolve_top_k(job.top_k, expect["classes"])
    key = {"teacher": plan.teacher.fingerprint, "data": expect["fingerprint"], "tokenizer": expect.get("tokenizer"),
           "top_k": k, "temperature": job.temperature, "unit": unit, "shard_rows": job.shard_rows}
    writer = LogitWriter(out, key, max(unit, job.shard_rows // unit * unit))
    started, done, rows = time.perf_counter(), 0, expect["rows"]
    pending = list(writer.pending(rows))
    progress(rows - sum(end - start for _, start, end in pending), rows)  # shards a previous run finished
    for i, start, end in pending:
        parts, mass = [], {}
        for a in range(start // unit, end // unit, job.batch_size):
            x = plan.inputs(a, min(a + job.batch_size, end // unit)).to(job.device)
            logits = plan.teacher.logits(x).reshape(-1, expect["classes"]).cpu()
            parts.append(top_k_rows(logits, k, job.temperature))
            for name, value in mass_kept(logits, job.temperature).items():
                mass[name] = mass.get(name, 0.0) + value
            done += len(logits)
            progress(len(logits), rows)
        writer.write(i, start, {n: torch.cat([p[n] for p in parts]) for n in parts[0]}, extra={"mass": mass})
    wall = time.perf_counter() - started
    shards = writer.done
    mass = {n: sum(s["mass"][n] for s in shards) / rows for n in shards[0]["mass"]}
    total_bytes = sum(s["bytes"] for s in shards)
    return writer.finish({
        "task": expect["task"], "rows": rows, "classes": expect["classes"], "top_k": k,
        "temperature": job.temperature, "seq_len": expect.get("seq_len"), "tokenizer": expect.get("tokenizer"),
        "teacher": {"source": plan.teacher.source, "kind": plan.teacher.kind, "fingerprint": plan.teacher.fingerprint},
        "dataset": {**plan.record, "fingerprint": expect["fingerprint"], **split_record(job)},
        "mass_kept": mass, "bytes": total_bytes, "bytes_per_row": total_bytes / rows,
        "bytes_per_example": total_bytes / (rows // unit),
        "prepare": {"rows_computed": done, "wall_s": round(wall, 3), "rows_per_s": round(done / max(wall, 1e-9), 1),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "device": job.device, "batch_size": job.batch_size},
    })


def split_record(job: PrepareJob) -> dict[str, Any]:
    return {"test_fraction": job.split.get("test_fraction"), "split_seed": job.split.get("split_seed"),
            "options": job.options}


def data_of_recipe(name: str) -> dict[str, Any]:
    """The dataset, split, options, window length and distillation temperature of a student recipe, as
    PrepareJob keywords."""
    from snnctl.config import load_recipe

    recipe = load_recipe(name)
    d = recipe.data
    lm = getattr(recipe, "lm", None)
    found = {"dataset": d.name, "split": {"test_fraction": d.test_fraction, "split_seed": d.split_seed},
             "options": dict(d.options), "seq_len": lm.seq_len if lm is not None else None}
    return {**found, "temperature": recipe.distill.temperature} if recipe.distill else found


def describe(folder: Path) -> dict[str, Any]:
    """A finished logits folder's index, its shards checked (what `snnctl distill show` prints)."""
    from snnctl.training.logits import LogitStore

    store = LogitStore(folder)
    return {"folder": str(folder), **{k: v for k, v in store.manifest.items() if k != "shards"},
            "shards": len(store.manifest["shards"])}
