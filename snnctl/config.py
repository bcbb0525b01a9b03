"""TOML recipes (pydantic), with `extends` and `--set`; the runtime the settings ask for (device, threads,
logging). The settings themselves live in snnctl.settings, below every area that reads them.

Every mistake in a recipe becomes a UserError naming the file, the key path and what was expected.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from snnctl import contracts, registry
from snnctl.errors import UserError
from snnctl.settings import first_problem, load_settings


def resolve_device(name: str) -> str:
    """Turn 'auto' into a real device; a device torch does not know, or one this machine lacks, is a
    user error naming what there is."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise UserError(f"unknown device '{name}'", hint="use cpu, cuda, cuda:N or auto")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for but CUDA is not available", hint="use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(f"device '{name}' does not exist", hint=f"this machine has {torch.cuda.device_count()} GPU(s)")
    return name


def check_kernel_fits(kernel: str, device: str) -> None:
    """A kernel forced with --kernel must run on the chosen device, found before anything is written."""
    from snnctl.nn.kernels import clib
    from snnctl.nn.kernels.lif import triton_module

    on_cuda = device.startswith("cuda")
    if kernel == "triton" and (not on_cuda or triton_module() is None):
        why = "the device is the CPU" if not on_cuda else "Triton is not installed"
        raise UserError(f"kernel 'triton' runs on CUDA GPUs with Triton, but {why}",
                        where="--kernel", hint="use --kernel auto (it picks the fastest that fits)")
    if kernel == "c" and (on_cuda or clib() is None):
        why = "the device is a GPU" if on_cuda else "the native library is not built (make setup)"
        raise UserError(f"kernel 'c' runs on the CPU from the native library, but {why}",
                        where="--kernel", hint="use --kernel auto (it picks the fastest that fits)")


def configure_logging(level: str) -> None:
    """Settings.log_level: the level of snnctl's Python loggers, printed to stderr."""
    import logging

    logger = logging.getLogger("snnctl")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def prepare_runtime(device: str | None = None, kernel: str | None = None) -> str:
    """Apply the settings a command needs before torch work (threads, log level, neuron kernel); pick the
    device and check that a forced kernel runs on it."""
    import torch

    from snnctl.nn import kernels

    if kernel is not None and kernel not in kernels.KERNELS:
        raise UserError(f"unknown kernel '{kernel}'", hint=f"use one of: {', '.join(kernels.KERNELS)}")
    settings = load_settings()
    configure_logging(settings.log_level)
    run_device = resolve_device(device or settings.device)
    if kernel is not None:
        check_kernel_fits(kernel, run_device)
        kernels.set_default(kernel)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    return run_device


# ---------------------------------------------------------------------------------------------
# Recipe schema
# ---------------------------------------------------------------------------------------------


SEED_MAX = 2**32 - 1  # derived seeds (seed * 1_000_033 + step) stay inside torch's 64-bit range


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def one_of(value: str, known: typing.Iterable[str], what: str) -> str:
    """A validator's check against a registry's names, so word lists are never copied into the schema."""
    names = tuple(known)
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}, expected one of: {', '.join(names)}")
    return value


class ModelSection(Strict):
    """The keys every task's [model] has."""

    name: str = Field(description="zoo name, see `snnctl plugins`")
    kind: Literal["ann", "snn"] = "snn"
    config: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the zoo builder")


class ClassifierModelSection(ModelSection):
    logic_gated: bool = Field(
        default=False, description="ternary weights trained with a straight-through estimator; no multiplications"
    )
    activation: Literal["relu", "qcfs"] = Field(
        default="relu", description="ANN activation; qcfs (clip-floor-shift) trains the ANN for conversion at low T"
    )
    qcfs_levels: int = Field(default=8, ge=1, le=256, description="qcfs: quantisation levels L (convert at T near L)")

    def activation_spec(self) -> dict[str, Any] | None:
        """What the manifest records to rebuild the ANN's activation (None: plain ReLU)."""
        return {"type": "qcfs", "levels": self.qcfs_levels} if self.activation == "qcfs" else None


class NeuronSection(BaseModel):
    """The [neuron] table: the keys every neuron shares, plus the chosen neuron's own, which its class
    declares (`Params`, see `snnctl.contracts.Neuron`) and which are validated here against it."""

    model_config = ConfigDict(extra="allow")

    type: str = "lif"
    threshold: float = Field(default=1.0, gt=0)
    tau: float | None = Field(default=None, gt=1.0, description="membrane time constant; decay = 1 - 1/tau")
    decay: float | None = Field(default=None, ge=0, le=1, description="membrane decay per step (beta)")
    reset: Literal["subtract", "zero"] = "subtract"
    v_init: float = Field(default=0.0, description="initial membrane potential, as a fraction of threshold")
    surrogate: str = Field(default="atan", description="surrogate gradient, one of snnctl.nn.surrogate.SURROGATES")
    surrogate_width: float = Field(default=0.5, gt=0, description="reach of the surrogate gradient around threshold")
    detach_reset: bool = False

    @field_validator("surrogate")
    @classmethod
    def _known_surrogate(cls, value: str) -> str:
        from snnctl.nn.surrogate import SURROGATES

        return one_of(value, SURROGATES, "surrogate")

    @model_validator(mode="wrap")
    @classmethod
    def _own_params(cls, data: Any, handler: ModelWrapValidatorHandler[NeuronSection]) -> NeuronSection:
        """Validate the keys beyond the shared ones against the chosen neuron's declared `Params`."""
        from snnctl import nn

        section = handler(data)
        if section.tau is not None and section.decay is not None:
            raise PydanticCustomError("tau_and_decay", "give tau or decay, not both")
        entry = registry.entries("neurons").get(section.type)
        if entry is None:
            installed = ", ".join(registry.entries("neurons")) or "none"
            raise _error("unknown_neuron", ("type",), section.type,
                         f"unknown neuron '{section.type}'; installed: {installed}")
        neuron = entry.load()
        try:
            params = nn.params_model(neuron).model_validate(nn.own_keys(neuron, section.__pydantic_extra__ or {}))
        except ValidationError as err:
            first = err.errors()[0]
            if first["type"] != "extra_forbidden":
                raise
            raise _error("extra_forbidden", first["loc"], first["input"], "Extra inputs are not permitted",
                         expected=", ".join(nn.expected_keys(neuron))) from None
        section.__pydantic_extra__ = params.model_dump()
        return section


def _error(kind: str, loc: tuple[Any, ...], value: Any, message: str, **ctx: str) -> ValidationError:
    """One validation error at `loc`, its context (e.g. the expected keys) kept for the hint."""
    detail = PydanticCustomError(kind, message, ctx or None)
    return ValidationError.from_exception_data("NeuronSection", [{"type": detail, "loc": loc, "input": value}])


class EncodingSection(Strict):
    type: str = Field(default="direct", description="spike encoding, one of snnctl.data.encoders.ENCODINGS")
    T: int = Field(default=4, ge=1, le=100_000)

    @field_validator("type")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        from snnctl.data.encoders import ENCODINGS

        return one_of(value, ENCODINGS, "encoding")


class AugmentSection(Strict):
    """Noise as a training augmentation: a level per example, uniform in [low, high(t)], where the
    upper bound rises linearly from `range[0]` to `range[1]` over the first `ramp` of training."""

    noise: str = Field(description="input noise model, one of snnctl.robust.noise.NOISE_MODELS (not weight)")
    range: tuple[float, float] = (0.0, 0.45)
    ramp: float = Field(default=0.5, ge=0, le=1, description="fraction of training over which the range widens")

    @field_validator("noise")
    @classmethod
    def _known_noise(cls, value: str) -> str:
        from snnctl.robust.noise import names

        return one_of(value, names(kind="input") + names(kind="spikes"), "input noise model")

    @field_validator("range")
    @classmethod
    def _in_unit_interval(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"noise range {list(value)} must satisfy 0 <= low <= high <= 1")
        return value


class DataSection(Strict):
    name: str = "digits"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    split_seed: int = Field(default=0, ge=0, le=SEED_MAX)
    options: dict[str, Any] = Field(default_factory=dict, description="dataset-specific options")


class ClassifierDataSection(DataSection):
    augment: AugmentSection | None = None


class TrainSection(Strict):
    """The keys of [train] that every task's loop reads (snnctl.training.loop)."""

    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    grad_clip: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    init: str | None = Field(default=None, description="bundle whose weights training starts from")
    checkpoint_every: int = Field(default=100, ge=1, description="steps between checkpoints")
    log_every: int = Field(default=10, ge=1, description="steps between metric lines")
    strategy: Literal["auto", "single", "ddp", "fsdp"] = Field(
        default="auto", description="across processes (--nproc): auto is single for one process, ddp for more")
    accumulate: int = Field(default=1, ge=1, description="micro-batches per step per process (same global batch)")


class ClassifierTrainSection(TrainSection):
    epochs: int = Field(default=10, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)


class LMSection(Strict):
    """Language-model training (task "lm"; a recipe with an [lm] table and no `task` key is one)."""

    seq_len: int = Field(default=256, ge=8, description="tokens per training window")
    steps: int = Field(default=1000, ge=1, description="optimizer steps (train.epochs does not apply)")
    eval_every: int = Field(default=250, ge=1, description="steps between held-out evaluations")
    eval_windows: int = Field(default=32, ge=1, description="held-out windows per periodic evaluation; the final "
                              "evaluation scores the whole held-out text")
    tokenizer: str = Field(default="byte", description="byte, bpe (trained on the corpus), or a tokenizer.json path")
    bpe_vocab: int = Field(default=2048, ge=259, description="bpe: vocabulary size, special tokens included")
    ssm_lr: float = Field(default=1e-3, gt=0, description="learning rate of the SSM's A and dt (no weight decay)")
    windows: Literal["random", "aligned"] = Field(
        default="random", description="training windows at random offsets, or on the grid of seq_len that "
        "precomputed teacher logits use (a distilled run is always aligned)")


class DistillSection(Strict):
    """[distill]: train against a teacher's softened outputs as well as the labels (snnctl.training.distill).
    Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)."""

    logits: str | None = Field(default=None, description="precomputed teacher logits (snnctl distill prepare)")
    teacher: str | None = Field(default=None, description="online: a teacher run every step (bundle, HF folder or id)")
    alpha: float = Field(default=0.7, ge=0, le=1, description="weight of the teacher term; 1 - alpha for the labels")
    temperature: float = Field(default=4.0, gt=0, description="softmax temperature T of both distributions")
    trust_remote_code: bool = Field(default=False, description="online Hugging Face teacher: run its own code")

    @field_validator("logits", "teacher", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        """`--distill DIR` clears an online teacher the recipe names, and `--teacher` the logits, with ''."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_source(self) -> DistillSection:
        if (self.logits is None) == (self.teacher is None):
            raise ValueError("give distill.logits (precomputed) or distill.teacher (online), one of the two")
        return self


class RecipeBase(Strict):
    name: str = ""
    description: str = ""
    extends: str | None = None


class ClassifierRecipe(RecipeBase):
    """Train a classifier (ANN or SNN) on a labelled dataset."""

    task: Literal["classify"] = "classify"
    model: ClassifierModelSection
    neuron: NeuronSection = Field(default_factory=NeuronSection)
    encoding: EncodingSection = Field(default_factory=EncodingSection)
    data: ClassifierDataSection = Field(default_factory=ClassifierDataSection)
    train: ClassifierTrainSection = Field(default_factory=ClassifierTrainSection)
    distill: DistillSection | None = None

    @model_validator(mode="after")
    def _logic_gated_fits(self) -> ClassifierRecipe:
        """Logic-gated weights fold their scale into each neuron's threshold (an SNN with a fixed one),
        or past ReLU to the readout (an ANN: QCFS's clipping does not commute with a scale)."""
        if self.model.logic_gated and self.model.kind == "ann" and self.model.activation != "relu":
            raise ValueError(f"model.logic_gated on an ANN needs model.activation = 'relu', not "
                             f"'{self.model.activation}': the weight scale is folded past each activation")
        if self.model.logic_gated and self.model.kind == "snn" and not _fixed_threshold(self.neuron.type):
            fixed = [name for name in registry.entries("neurons") if _fixed_threshold(name)]
            raise ValueError(f"model.logic_gated needs a neuron with a fixed threshold, not '{self.neuron.type}'; "
                             f"use one of: {', '.join(fixed)}")
        return self


class LMRecipe(RecipeBase):
    """Train a language model on a text corpus: no [neuron], [encoding] or classifier-only keys."""

    task: Literal["lm"] = "lm"
    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    lm: LMSection = Field(default_factory=LMSection)
    distill: DistillSection | None = None


Recipe = ClassifierRecipe | LMRecipe


def recipe_schema(task: str) -> type[BaseModel]:
    """The recipe schema the task declares (`recipe_schema` on its `snnctl.tasks` entry point): a
    built-in or a plugin's task brings its own, so its recipes refuse what they do not use."""
    schema = getattr(registry.load("tasks", task), "recipe_schema", None)
    if not (isinstance(schema, type) and issubclass(schema, RecipeBase)):
        raise UserError(f"task '{task}' declares no recipe schema", where="snnctl.tasks",
                        hint="its class needs `recipe_schema = <a snnctl.config.RecipeBase subclass>`")
    return schema


def recipe_schemas() -> dict[str, type[BaseModel]]:
    """Every installed task's recipe schema, by task name."""
    return {task: recipe_schema(task) for task in registry.entries("tasks")}


def _fixed_threshold(neuron: str) -> bool:
    """What the neuron class declares (snnctl.contracts.Neuron.fixed_threshold)."""
    return contracts.has_fixed_threshold(registry.load("neurons", neuron))


# ---------------------------------------------------------------------------------------------
# Finding, reading and overriding recipes
# ---------------------------------------------------------------------------------------------


@cache
def recipe_dirs() -> tuple[tuple[str, Path], ...]:
    """(package, folder) for every registered recipe folder."""
    found = []
    for entry in registry.entries("recipes").values():
        found.append((entry.package, Path(str(files(entry.value)))))
    return tuple(found)


def available_recipes() -> dict[str, Path]:
    """Recipe name -> file over every recipe folder; a name two folders hold goes to the built-in one, with
    a warning (`registry.resolve`)."""
    claims = (registry.Entry("recipe files", path.stem, str(path), pkg)
              for pkg, folder in recipe_dirs() for path in sorted(folder.glob("*.toml")))
    return {name: Path(entry.value) for name, entry in registry.resolve("recipe files", claims).items()}


def find_recipe(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in name_or_path:
        if not path.is_file():
            raise UserError(f"recipe file '{name_or_path}' not found", hint="check the path")
        return path
    table = available_recipes()
    if name_or_path not in table:
        raise UserError(
            f"unknown recipe '{name_or_path}'",
            hint=f"available: {', '.join(table) or 'none'}; or give a path to a .toml file",
        )
    return table[name_or_path]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"not valid TOML: {err}", where=str(path)) from None
    except UnicodeDecodeError:
        raise UserError("not a text file (a recipe is UTF-8 TOML)", where=str(path)) from None
    except OSError as err:
        raise UserError(f"cannot read recipe: {err.strerror}", where=str(path)) from None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_extends(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in seen:
        chain = " -> ".join(p.name for p in (*seen, path.resolve()))
        raise UserError(f"recipes extend each other in a loop: {chain}", where=str(path))
    raw = _read_toml(path)
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise UserError("extends: expected a recipe name or path (a string)", where=str(path))
    parent_path = path.parent / parent if parent.endswith(".toml") else find_recipe(parent)
    if not parent_path.is_file():
        raise UserError(f"extends: recipe '{parent}' not found", where=str(path))
    base = _resolve_extends(parent_path, (*seen, path.resolve()))
    merged = _deep_merge(base, raw)
    own_model, base_model = raw.get("model"), base.get("model")
    if isinstance(own_model, dict) and isinstance(base_model, dict) and own_model.get("name", base_model.get(
            "name")) != base_model.get("name"):
        # another zoo model: the parent's builder arguments are not this one's
        merged["model"]["config"] = own_model.get("config", {})
    merged["extends"] = parent
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (['train', 'lr'], 0.0003). Values are TOML literals, else plain strings."""
    if not text.isprintable():
        raise UserError(f"--set {text!r}: contains control characters", hint="expected KEY.PATH=VALUE")
    if "=" not in text:
        raise UserError(f"--set '{text}': expected KEY.PATH=VALUE, e.g. train.lr=3e-4")
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise UserError(f"--set '{text}': the key is empty")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def _table_model(annotation: Any) -> type[BaseModel] | None:
    """The schema of a table key: the model itself, or the model inside `Model | None`."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def task_of(data: dict[str, Any]) -> str:
    """The recipe's task: its `task` key, else "lm" for a recipe with an [lm] table (recipes written
    before the key existed), else "classify"."""
    task = data.get("task")
    if task is None:
        return "lm" if data.get("lm") is not None else "classify"
    if not isinstance(task, str) or task not in registry.entries("tasks"):
        raise UserError(f"task: expected one of {', '.join(registry.entries('tasks'))}, got {task!r}")
    return task


def _check_key_exists(parts: list[str], schema: type[BaseModel]) -> None:
    """Refuse --set on a key the task's schema does not have (free-form tables accept any sub-key)."""
    model: type[BaseModel] | None = schema
    for depth, part in enumerate(parts):
        if model is None or model.model_config.get("extra") == "allow":  # free-form, or validated by content
            return
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            raise UserError(
                f"--set {'.'.join(parts)}: no such key in a recipe of task '{task_name(schema)}'",
                hint=f"keys under {where}: {', '.join(fields)}",
            )
        model = _table_model(fields[part].annotation)
        if model is None and depth < len(parts) - 1 and fields[part].annotation != dict[str, Any]:
            raise UserError(f"--set {'.'.join(parts)}: '{part}' is a value, not a table")


def task_name(schema: type[BaseModel]) -> str:
    return str(schema.model_fields["task"].default)


def _apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            table = ".".join(parts[: depth + 1])
            raise UserError(f"--set {'.'.join(parts)}: {table} is {node!r}, not a table",
                            hint=f"set {table} to a table, or drop one of the two --set values")
    node[parts[-1]] = value


def _unknown_key_hint(err: ValidationError, schema: type[BaseModel]) -> str | None:
    problem = err.errors()[0]
    if problem["type"] != "extra_forbidden":
        return None
    if "expected" in problem.get("ctx", {}):  # a table whose keys depend on its content (e.g. [neuron])
        return "expected one of: " + problem["ctx"]["expected"]
    model: type[BaseModel] = schema
    for part in problem["loc"][:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return "expected one of: " + ", ".join(model.model_fields)


def distill_overrides(logits: str | None, teacher: str | None) -> list[str]:
    """`train --distill DIR` / `--teacher T` as --set values: the one named replaces the recipe's source."""
    if logits is not None and teacher is not None:
        raise UserError("give --distill (precomputed logits) or --teacher (online), not both", where="snnctl train")
    if logits is None and teacher is None:
        return []
    pairs = {"logits": logits or "", "teacher": teacher or ""}
    return [f"distill.{key}={json.dumps(value)}" for key, value in pairs.items()]


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Find, merge (`extends`), override (`--set`) and validate a recipe. The task comes from the file
    (or `--set task=...`), so --set on a key of another task's schema is refused."""
    path = find_recipe(name_or_path)
    data = _resolve_extends(path)
    parsed = [parse_override(text) for text in overrides or []]
    for parts, value in parsed:
        if parts == ["task"]:
            data["task"] = value
    schema = recipe_schema(_task_where(data, str(path)))
    for parts, value in parsed:
        _check_key_exists(parts, schema)
        _apply_override(data, parts, value)
    data.setdefault("name", path.stem)
    return _validate(data, str(path))


def _task_where(data: dict[str, Any], where: str) -> str:
    try:
        return task_of(data)
    except UserError as err:
        raise UserError(err.what, where=where) from None


def _validate(data: dict[str, Any], where: str) -> Recipe:
    schema = recipe_schema(_task_where(data, where))
    if "task" not in data:
        data = {**data, "task": task_name(schema)}
        if data.get("lm", 0) is None:  # an old dump of a classifier recipe keeps `lm = None`
            data.pop("lm")
    try:
        return typing.cast(Recipe, schema.model_validate(data))
    except ValidationError as err:
        raise UserError(first_problem(err), where=where, hint=_unknown_key_hint(err, schema)) from None


# keys a language-model recipe could hold before recipes were split by task, which its training ignored
_V1_LM_IGNORED = {"": ("neuron", "encoding"), "model": ("logic_gated", "activation", "qcfs_levels"),
                  "train": ("epochs", "optimizer", "momentum", "label_smoothing"), "data": ("augment",)}


def validate_recipe(data: dict[str, Any], where: str) -> Recipe:
    """A Recipe from the copy a bundle's manifest keeps, or one clear error. A copy written before
    the `task` key existed is migrated: an LM recipe loses the classifier keys its training ignored."""
    if not isinstance(data, dict):
        raise UserError("the recorded recipe is not a table", where=where)
    if "task" not in data and data.get("lm") is not None:
        data = dict(data)
        for table, keys in _V1_LM_IGNORED.items():
            if table and isinstance(data.get(table), dict):
                data[table] = {k: v for k, v in data[table].items() if k not in keys}
            elif not table:
                data = {k: v for k, v in data.items() if k not in keys}
    return _validate(data, where)
