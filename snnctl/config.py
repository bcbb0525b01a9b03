"""Global settings (pydantic-settings) and TOML recipes (pydantic), with `extends` and `--set`.

Every mistake in a recipe becomes a UserError naming the file, the key path and what was expected.
"""

from __future__ import annotations

import os
import tomllib
import typing
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from snnctl import registry
from snnctl.errors import UserError

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def _settings_file() -> Path:
    return Path(os.environ.get("SNNCTL_CONFIG", "snnctl.toml"))


class Settings(BaseSettings):
    """Machine-wide settings: SNNCTL_* environment variables override an optional snnctl.toml."""

    model_config = SettingsConfigDict(env_prefix="SNNCTL_", extra="forbid")

    home: Path = Field(default=Path("~/.snnctl"), description="where snnctl keeps its own files")
    cache_dir: Path | None = Field(default=None, description="downloaded models/datasets; HOME/cache if unset")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads; torch decides if unset")
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_settings_file())
        return (init_settings, env_settings, toml)

    @property
    def cache(self) -> Path:
        return (self.cache_dir or self.home / "cache").expanduser()


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        raise UserError(_first_problem(err), where=f"settings ({_settings_file()} / SNNCTL_*)") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"not valid TOML: {err}", where=str(_settings_file())) from None


def resolve_device(name: str) -> str:
    """Turn 'auto' into a real device; ask for CUDA where there is none and get a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for but CUDA is not available", hint="use --device cpu")
    return name


def prepare_runtime(device: str | None = None, kernel: str | None = None) -> str:
    """Apply the settings a command needs before torch work (threads, neuron kernel); pick the device."""
    import torch

    from snnctl.nn import kernels

    if kernel is not None:
        if kernel not in kernels.KERNELS:
            raise UserError(f"unknown kernel '{kernel}'", hint=f"use one of: {', '.join(kernels.KERNELS)}")
        kernels.set_default(kernel)
    settings = load_settings()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    return resolve_device(device or settings.device)


# ---------------------------------------------------------------------------------------------
# Recipe schema
# ---------------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(Strict):
    name: str = Field(description="zoo name, see `snnctl plugins`")
    kind: Literal["ann", "snn"] = "snn"
    config: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the zoo builder")
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


class NeuronSection(Strict):
    type: str = "lif"
    threshold: float = Field(default=1.0, gt=0)
    tau: float | None = Field(default=None, gt=1.0, description="membrane time constant; decay = 1 - 1/tau")
    decay: float | None = Field(default=None, ge=0, le=1, description="membrane decay per step (beta)")
    reset: Literal["subtract", "zero"] = "subtract"
    v_init: float = Field(default=0.0, description="initial membrane potential, as a fraction of threshold")
    surrogate: Literal["atan", "sigmoid", "fast_sigmoid", "triangle"] = "atan"
    surrogate_width: float = Field(default=0.5, gt=0, description="reach of the surrogate gradient around threshold")
    detach_reset: bool = False
    adapt_decay: float = Field(default=0.95, ge=0, le=1, description="alif: decay of the threshold trace")
    adapt_scale: float = Field(default=0.2, ge=0, description="alif: threshold increase per spike")
    levels: int = Field(default=4, ge=1, description="graded: most spikes (threshold multiples) per step")


class EncodingSection(Strict):
    type: Literal["direct", "rate", "poisson", "latency"] = "direct"
    T: int = Field(default=4, ge=1, le=100_000)


class AugmentSection(Strict):
    """Noise as a training augmentation: a level per example, uniform in [low, high(t)], where the
    upper bound rises linearly from `range[0]` to `range[1]` over the first `ramp` of training."""

    noise: Literal["bitflip", "salt_pepper", "gaussian", "dropout", "spike_delete", "spike_insert", "spike_jitter"]
    range: tuple[float, float] = (0.0, 0.45)
    ramp: float = Field(default=0.5, ge=0, le=1, description="fraction of training over which the range widens")

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
    split_seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict, description="dataset-specific options")
    augment: AugmentSection | None = None


class TrainSection(Strict):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    grad_clip: float | None = Field(default=None, gt=0)
    seed: int = 0
    init: str | None = Field(default=None, description="bundle whose weights training starts from")
    checkpoint_every: int = Field(default=100, ge=1, description="steps between checkpoints")
    log_every: int = Field(default=10, ge=1, description="steps between metric lines")


class LMSection(Strict):
    """Language-model training: the presence of [lm] makes a recipe train a language model."""

    seq_len: int = Field(default=256, ge=8, description="tokens per training window")
    steps: int = Field(default=1000, ge=1, description="optimizer steps (train.epochs does not apply)")
    eval_every: int = Field(default=250, ge=1, description="steps between held-out evaluations")
    eval_windows: int = Field(default=32, ge=1, description="held-out windows per periodic evaluation; the final "
                              "evaluation scores the whole held-out text")
    tokenizer: str = Field(default="byte", description="byte, bpe (trained on the corpus), or a tokenizer.json path")
    bpe_vocab: int = Field(default=2048, ge=259, description="bpe: vocabulary size, special tokens included")
    ssm_lr: float = Field(default=1e-3, gt=0, description="learning rate of the SSM's A and dt (no weight decay)")


class Recipe(Strict):
    name: str = ""
    description: str = ""
    extends: str | None = None
    model: ModelSection
    neuron: NeuronSection = Field(default_factory=NeuronSection)
    encoding: EncodingSection = Field(default_factory=EncodingSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    lm: LMSection | None = None


# ---------------------------------------------------------------------------------------------
# Finding, reading and overriding recipes
# ---------------------------------------------------------------------------------------------


@cache
def recipe_dirs() -> tuple[tuple[str, Path], ...]:
    """(package, folder) for every registered recipe folder, the built-in one first."""
    found = []
    for entry in registry.entries("recipes").values():
        found.append((entry.package, Path(str(files(entry.value)))))
    return tuple(found)


def available_recipes() -> dict[str, Path]:
    table: dict[str, Path] = {}
    for _pkg, folder in recipe_dirs():
        for path in sorted(folder.glob("*.toml")):
            table.setdefault(path.stem, path)
    return table


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
    merged = _deep_merge(_resolve_extends(parent_path, (*seen, path.resolve())), raw)
    merged["extends"] = parent
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (['train', 'lr'], 0.0003). Values are TOML literals, else plain strings."""
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


def _check_key_exists(parts: list[str]) -> None:
    """Refuse --set on a key the schema does not have (free-form tables accept any sub-key)."""
    model: type[BaseModel] | None = Recipe
    for depth, part in enumerate(parts):
        if model is None:  # inside a free-form dict: anything goes
            return
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            raise UserError(
                f"--set {'.'.join(parts)}: no such recipe key",
                hint=f"keys under {where}: {', '.join(fields)}",
            )
        model = _table_model(fields[part].annotation)
        if model is None and depth < len(parts) - 1 and fields[part].annotation != dict[str, Any]:
            raise UserError(f"--set {'.'.join(parts)}: '{part}' is a value, not a table")


def _apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _first_problem(err: ValidationError) -> str:
    problem = err.errors()[0]
    loc = ".".join(str(p) for p in problem["loc"]) or "(top level)"
    if problem["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    return f"{loc}: {problem['msg'].lower()}"


def _unknown_key_hint(err: ValidationError) -> str | None:
    problem = err.errors()[0]
    if problem["type"] != "extra_forbidden":
        return None
    model: type[BaseModel] = Recipe
    for part in problem["loc"][:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return "expected one of: " + ", ".join(model.model_fields)


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Find, merge (`extends`), override (`--set`) and validate a recipe."""
    path = find_recipe(name_or_path)
    data = _resolve_extends(path)
    for text in overrides or []:
        parts, value = parse_override(text)
        _check_key_exists(parts)
        _apply_override(data, parts, value)
    data.setdefault("name", path.stem)
    return validate_recipe(data, str(path))


def validate_recipe(data: dict[str, Any], where: str) -> Recipe:
    """A Recipe from plain data (a file, or the copy a bundle's manifest keeps), or one clear error."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise UserError(_first_problem(err), where=where, hint=_unknown_key_hint(err)) from None
