"""Knowledge distillation inside the training tasks: the loss, and where the teacher's outputs come from.

loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)   (Hinton et al. 2015)

With top-K logits the teacher's distribution is kept over K + 1 outcomes: its K largest classes and one
bucket holding the rest of its mass (known exactly from the stored log-normaliser); the student's is
folded onto the same K + 1 outcomes. That is still a true KL divergence, exact when the tail is empty,
and it neither pretends the teacher put all its mass on the K classes (renormalising) nor lets the
student put mass anywhere in the tail for free (dropping it).

Teacher outputs come from a precomputed folder (snnctl.training.logits), indexed by the rows a task's
batch covers, or online from a teacher run on the batch's inputs at every step (for comparison and for
small teachers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from snnctl.config import DistillSection
from snnctl.errors import UserError
from snnctl.training.logits import LogitStore, TeacherRows


@dataclass
class Teacher:
    """A loaded teacher: `forward(inputs) -> logits [..., classes]` under no_grad in eval mode, and what
    identifies it (source, fingerprint of its weights, tokenizer fingerprint for language models)."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    source: str
    fingerprint: str
    kind: str
    tokenizer: str | None = None
    max_context: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.forward(inputs).float()


def fingerprint(*parts: torch.Tensor | bytes | str) -> str:
    """sha256 over tensors' bytes and strings: what identifies the data a teacher was run on."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy().tobytes()
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()


def kl_term(student: torch.Tensor, teacher: TeacherRows, temperature: float) -> torch.Tensor:
    """Mean KL(teacher_T || student_T) over rows; student logits [N, C]. The top-K form makes one pass of
    exp over the student's logits and reads both its normaliser and its tail's mass from it (the tail
    summed directly, not as 1 - top, so a small tail keeps its precision)."""
    s = student.float() / temperature
    if teacher.full is not None:
        log_p = (teacher.full / temperature).log_softmax(-1)
        return (log_p.exp() * (log_p - s.log_softmax(-1))).sum(-1).mean()
    assert teacher.values is not None and teacher.indices is not None and teacher.lse is not None
    log_p_top = teacher.values / temperature - teacher.lse[:, None]
    p_top = log_p_top.exp()
    p_rest = (1 - p_top.sum(-1)).clamp_min(0)
    shift = s.detach().amax(-1, keepdim=True)
    e = (s - shift).exp()
    lse = shift.squeeze(-1) + e.sum(-1).log()
    log_q_top = s.gather(-1, teacher.indices) - lse[:, None]
    rest = e.scatter(-1, teacher.indices, 0.0).sum(-1)
    log_q_rest = (shift.squeeze(-1) + rest.clamp_min(1e-30).log() - lse).clamp_min(-100.0)
    tail = torch.where(p_rest > 0, p_rest * (torch.log(p_rest.clamp_min(1e-30)) - log_q_rest), 0.0)
    return ((p_top * (log_p_top - log_q_top)).sum(-1) + tail).mean()


class Distiller:
    """The teacher term of one recipe's training: `loss(student, ce, rows, inputs)` mixes it with the
    task's own cross-entropy. `expect` is what the task's data is (kind, rows, classes, fingerprints);
    precomputed logits that were made for other data are refused before anything is written."""

    def __init__(self, section: DistillSection, expect: dict[str, Any], device: str,
                 load_teacher: Callable[[str, str, bool], Teacher]) -> None:
        self.section = section
        self.store: LogitStore | None = None
        self.teacher: Teacher | None = None
        if section.logits is not None:
            self.store = LogitStore(section.logits)  # an online teacher is checked on `expect["sample"]`
            check_store(self.store, expect, section)
            self.source = {"logits": str(section.logits), "teacher": self.store.manifest["teacher"]}
        else:
            assert section.teacher is not None
            self.teacher = load_teacher(section.teacher, device, section.trust_remote_code)
            if expect.get("tokenizer") and self.teacher.tokenizer != expect["tokenizer"]:
                raise UserError("the teacher's tokenizer differs from the recipe's", where="distill.teacher",
                                hint="a student reads the teacher's tokens: set lm.tokenizer to the teacher's")
            check_reads(self.teacher, expect, device, where="distill.teacher")
            self.source = {"online": True, "teacher": {"source": self.teacher.source,
                                                        "fingerprint": self.teacher.fingerprint}}

    def loss(self, student: torch.Tensor, ce: torch.Tensor, rows: torch.Tensor,
             inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(alpha * T^2 * KL + (1 - alpha) * ce, KL or None where alpha is 0); student logits [N, C],
        `rows` their row numbers in the precomputed folder, `inputs` what an online teacher is run on."""
        s = self.section
        if s.alpha == 0:  # the labels alone: no teacher work (a from-scratch baseline on the same batches)
            return ce, None
        if self.store is not None:
            teacher = self.store.rows(rows).to(student.device)
        else:
            assert self.teacher is not None
            teacher = TeacherRows(full=self.teacher.logits(inputs).reshape(student.shape))
        kl = kl_term(student, teacher, s.temperature)
        return s.alpha * s.temperature**2 * kl + (1 - s.alpha) * ce, kl.detach()


def check_reads(teacher: Teacher, expect: dict[str, Any], device: str, where: str) -> None:
    """The teacher reads the task's data (`expect["sample"]`) and has the student's width: found before
    anything is written, by `distill prepare` and by an online teacher alike."""
    try:
        width = teacher.logits(expect["sample"].to(device)).shape[-1]
    except (RuntimeError, ValueError, IndexError) as err:
        raise UserError(f"the teacher cannot read this dataset ({str(err).splitlines()[0]})", where=where,
                        hint="give a teacher trained on this dataset's inputs") from None
    if width != expect["classes"]:
        what = "tokens in its tokenizer" if expect["task"] == "lm" else "classes in the dataset"
        raise UserError(f"the teacher has {width} outputs but there are {expect['classes']} {what}",
                        where=where, hint="give a teacher trained on this dataset (or tokenizer)")


def check_store(store: LogitStore, expect: dict[str, Any], section: DistillSection) -> None:
    """The folder must have been made for this task, data, tokenizer, width and (top-K) temperature."""
    m, where = store.manifest, str(store.folder)
    if m["task"] != expect["task"]:
        raise UserError(f"these logits are for a {m['task']} task, the recipe trains a {expect['task']} one",
                        where=where, hint="prepare logits on the recipe's dataset")
    if expect.get("tokenizer") and m.get("tokenizer") != expect["tokenizer"]:
        raise UserError("the logits were made with another tokenizer than the recipe's", where=where,
                        hint="a student reads the teacher's tokens: set lm.tokenizer to the teacher's")
    if m["dataset"]["fingerprint"] != expect["fingerprint"]:
        d = m["dataset"]
        raise UserError(f"the logits were made on other data ({d['name']}, test_fraction {d['test_fraction']}, "
                        f"split_seed {d['split_seed']}) than the recipe's [data]", where=where,
                        hint="prepare logits with the recipe's dataset and split, or point the recipe at those")
    for key, what in (("classes", "outputs"), ("seq_len", "window length"), ("rows", "rows")):
        if key in expect and m.get(key) != expect[key]:
            raise UserError(f"the logits have {m.get(key)} {what}, the student {expect[key]}", where=where,
                            hint="prepare logits from a teacher and windows that fit the student")
    if m.get("top_k") is not None and abs(m["temperature"] - section.temperature) > 1e-9:
        raise UserError(f"top-{m['top_k']} logits were kept for temperature {m['temperature']}, "
                        f"distill.temperature is {section.temperature}", where="distill.temperature",
                        hint=f"use temperature {m['temperature']}, or prepare again with --temperature "
                        f"{section.temperature}")


def make_distiller(section: DistillSection | None, expect: dict[str, Any], device: str,
                   load_teacher: Callable[[str, str, bool], Teacher]) -> Distiller | None:
    if section is None:
        return None
    return Distiller(section, expect, device, load_teacher)


def record(distiller: Distiller | None) -> dict[str, Any] | None:
    """What the student bundle's manifest says about its teacher."""
    if distiller is None:
        return None
    s = distiller.section
    return {**distiller.source, "alpha": s.alpha, "temperature": s.temperature}

