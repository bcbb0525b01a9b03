"""Plugin contracts: what the object behind each entry point must look like, in one place.

Like `llm`'s hook specs, this module is the reference a third-party package is written against
(README "Plugins" shows a minimal outside package for each group). A plugin declares what it can
do with capability attributes on the object itself (`takes_converted`, `task`, `Params`); the core
reads them through the helpers below and never keeps lists of plugin names. This module sits at the
bottom of the layers: it imports nothing from snnctl.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])

# --- commands (group `snnctl.commands`) -----------------------------------------------------------


@runtime_checkable
class Command(Protocol):
    """A command is a function whose parameters are typer options (one subcommand), or a `typer.Typer`
    (a command group). Its name is the entry point's name; a built-in command of that name wins."""

    def __call__(self, *args: Any, **kwargs: Any) -> None: ...


# --- model builders (group `snnctl.models`) --------------------------------------------------------

# What a model is for: a classifier or a language model (how it is built, called and loaded). Training
# tasks (`snnctl.tasks`, below) are open-ended; each trains a model of one of these.
Task = Literal["classify", "lm"]
TASKS: tuple[str, ...] = ("classify", "lm")


@runtime_checkable
class ModelBuilder(Protocol):
    """A model builder; its `task` says what it builds, and so how it is called.

    - `"classify"` (the default when `task` is absent): `build(act, **config) -> nn.Module` mapping
      `[B, *input_shape]` to logits `[B, classes]`. `act()` returns a fresh activation (ReLU for the
      ANN twin, a spiking neuron for the SNN twin), so both twins come from one definition. Parameters
      named `num_classes`, `in_channels` or `in_features` are filled from the dataset unless set.
    - `"lm"`: `build(kind, **config) -> nn.Module` mapping token ids `[B, L]` to logits
      `[B, L, vocab_size]`; `kind` is the recipe's `model.kind` ("snn" or "ann") and `vocab_size`
      comes from the tokenizer; the module follows `LanguageModel` below.

    `config` is the recipe's `[model] config` table. Declare the task with `@builds("lm")`.
    """

    task: Task

    def __call__(self, first: Any, /, **config: Any) -> torch.nn.Module: ...


def builds(task: Task) -> Callable[[F], F]:
    """Declare what a model builder builds: `@builds("lm")` above `def build(**config)`."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")

    def mark(builder: F) -> F:
        builder.task = task  # type: ignore[attr-defined]
        return builder

    return mark


@runtime_checkable
class LanguageModel(Protocol):
    """What an `"lm"` builder returns; training, scoring, generation, `chat` and `bench` rely on it.

    `forward(ids [B, L]) -> logits [B, L, V]` (training and scoring); `start(batch) -> state`,
    `step(ids [B], state) -> (logits [B, V], state)` and `prefill(ids [B, L], state) -> (logits [B, V],
    state)` (generation, one token at a time); `activity()` lists the spikes and neuron-steps of each
    spiking site in the last call ([] for none); `token_ops(site_spikes, context)` gives the MACs and
    spike-driven accumulates of one token (energy estimates); `spiking` and `max_context` (the longest
    sequence accepted) are plain attributes."""

    spiking: bool
    max_context: int

    def forward(self, ids: torch.Tensor) -> torch.Tensor: ...

    def start(self, batch: int) -> Any: ...

    def step(self, ids: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def prefill(self, ids: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def activity(self) -> list[dict[str, float]]: ...

    def token_ops(self, site_spikes: list[float], context: int = 0) -> dict[str, float]: ...


def task_of(builder: Any) -> str:
    """What a model builder declares it builds; a builder that says nothing builds a classifier."""
    return getattr(builder, "task", "classify")


# --- neurons (group `snnctl.neurons`) --------------------------------------------------------------


@runtime_checkable
class Neuron(Protocol):
    """A neuron is a `torch.nn.Module` class (usually a `snnctl.nn.SpikingNeuron` subclass) built as
    `cls(**shared, **params)`: `shared` are the recipe's `[neuron]` keys every neuron has (`threshold`,
    `tau` or `decay`, `reset`, `v_init`, `surrogate`, `surrogate_width`, `detach_reset`; those its
    constructor accepts), `params` the keys it declares itself in `Params`, a pydantic model with extra
    keys forbidden (subclass `snnctl.nn.NoParams`), against which the recipe is validated: an unknown
    key or a bad value is a user error naming the file and key. `forward(x [T, B, ...])` returns the
    spikes of a whole sequence from the initial state; `run(x, state)` returns `(spikes, state)` and
    carries state across calls (`state=None` starts a sequence). `fixed_threshold = True` declares
    that the threshold does not move while it runs (a logic-gated SNN needs that; absent: it moves)."""

    Params: ClassVar[type[BaseModel]]
    fixed_threshold: ClassVar[bool]

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def run(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]: ...


# --- datasets (group `snnctl.datasets`) ------------------------------------------------------------


@runtime_checkable
class DatasetLoader(Protocol):
    """`load(test_fraction=..., split_seed=..., **options) -> snnctl.data.Dataset` (train and test
    tensors, `num_classes`, a `name`, and `info` such as a text set's `vocab_size`): the keywords are
    the recipe's `[data]` `test_fraction`, `split_seed` and the `options` table."""

    def __call__(self, **options: Any) -> Any: ...


# --- compile targets (group `snnctl.targets`) ------------------------------------------------------


@runtime_checkable
class CompileTarget(Protocol):
    """`compile(bundle, out, options=None) -> dict`: writes the artifacts into the folder `out`, runs the
    round trip against the PyTorch SNN and returns the summary that `compile.json` holds (`target`,
    `out`, `artifacts` {kind: file name}, `roundtrip` {`samples`, `T`, `layers`, ...}, `warnings`,
    `compile_s`); the `roundtrip` keys the table prints are optional for a third-party target.
    `takes_converted = True` declares that it also compiles converted SNNs (per-channel thresholds,
    subtractive reset), `check_converted` what of them it cannot map, `max_pooling = False` that it
    has no max over spikes, and `signed_spikes = True` that it takes spikes of -1 (`convert --signed`);
    declare them with `@compile_target(takes_converted=True, ...)`."""

    takes_converted: bool

    def __call__(self, bundle: Path | str, out: Path | str, options: Any = None) -> dict[str, Any]: ...


ConvertedCheck = Callable[["torch.nn.Module", tuple[int, ...]], None]


def compile_target(*, takes_converted: bool = False, check_converted: ConvertedCheck | None = None,
                   max_pooling: bool = True, signed_spikes: bool = False) -> Callable[[F], F]:
    """Declare a compile target's capabilities on the function itself. `check_converted(model,
    input_shape)` raises a UserError, naming the layer, for a converted SNN the target cannot map;
    `snnctl convert --target` runs it before anything is written. `max_pooling=False` says the target
    has no max over spikes, so `convert --maxpool auto` replaces max pooling by average pooling;
    `signed_spikes=True` that it runs signed IF neurons (spikes of -1 and +1)."""

    def mark(fn: F) -> F:
        fn.takes_converted = takes_converted  # type: ignore[attr-defined]
        fn.check_converted = check_converted  # type: ignore[attr-defined]
        fn.max_pooling = max_pooling  # type: ignore[attr-defined]
        fn.signed_spikes = signed_spikes  # type: ignore[attr-defined]
        return fn

    return mark


def takes_converted(target: Any) -> bool:
    """Whether a compile target declares that it takes converted SNNs (absent: it does not)."""
    return bool(getattr(target, "takes_converted", False))


def has_fixed_threshold(neuron: Any) -> bool:
    """Whether a neuron class declares a threshold that stays put (absent: it may move)."""
    return bool(getattr(neuron, "fixed_threshold", False))


def pools_max(target: Any) -> bool:
    """Whether a compile target runs (rate-gated) max pooling over spikes (absent: it does)."""
    return bool(getattr(target, "max_pooling", True))


def takes_signed_spikes(target: Any) -> bool:
    """Whether a compile target declares that it runs signed neurons (absent: it does not)."""
    return bool(getattr(target, "signed_spikes", False))


def converted_check(target: Any) -> ConvertedCheck | None:
    """The check a compile target declares for converted SNNs it is handed, if any."""
    return getattr(target, "check_converted", None)


# --- recipe folders (group `snnctl.recipes`) -------------------------------------------------------
# The entry point names an importable package; every `*.toml` file inside it is a recipe named after
# its stem. A recipe that has the name of a built-in one is reported and the built-in is used.


# --- bundle kinds (group `snnctl.bundles`) ---------------------------------------------------------


@runtime_checkable
class BundleLoader(Protocol):
    """`load(path, manifest, map_location) -> snnctl.artifact.Bundle`: builds the model that a bundle of
    one kind holds (the entry point's name is the manifest's `kind`) and ends with
    `snnctl.artifact.finish(path, manifest, model, map_location)`, which loads the weights and returns
    the bundle (pass a `Bundle` subclass and its fields where the kind carries more, as an LM carries
    its tokenizer). `manifest` is the validated `snnctl.manifest.Manifest`; the kind's own section is
    `manifest.model_extra[...]` or a typed field. `task` says what the model is for (`"classify"` or
    `"lm"`), so `load_bundle(path, expect=...)` refuses the wrong one before anything is built;
    declare it with `@bundle_loader("lm")`."""

    task: Task

    def __call__(self, path: Path, manifest: Any, map_location: str) -> Any: ...


def bundle_loader(task: Task) -> Callable[[F], F]:
    """Declare what the models a bundle loader builds are for: `@bundle_loader("classify")`."""
    return builds(task)


# --- training tasks (group `snnctl.tasks`) ---------------------------------------------------------


@runtime_checkable
class TrainTask(Protocol):
    """One kind of training around the one loop (`snnctl.training.loop.run`). The entry point's name is
    the recipe's `task`; it names a class (a factory `cls(recipe, device) -> TrainTask`) that loads the
    data, builds `model` on `device` and checks every input before anything is written, and whose
    `recipe_schema` (a `snnctl.config.RecipeBase` subclass with `task: Literal["<name>"]`) is what
    that task's recipes are validated against, `--set` included. The loop owns the
    optimizer, learning-rate schedule, checkpoints, resume and metrics.jsonl; the task owns the rest.
    The loop may hand `loss` and `evaluate` a wrapped model (DDP): a task reads the model's own
    attributes through `snnctl.training.loop.unwrap`. Distillation (a recipe's [distill]) is the task's
    business: its `loss` hands its logits, the rows they stand for and its cross-entropy to a
    `snnctl.training.distill.Distiller`."""

    recipe_schema: ClassVar[type[BaseModel]]
    model: torch.nn.Module
    total_steps: int

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups (the model's own `param_groups(weight_decay)` where it declares them); a
        group's `lr_scale` multiplies the scheduled learning rate."""
        ...

    def batch(self, step: int) -> torch.Tensor:
        """The global batch of one step, a function of (seed, step) alone, so a resumed run draws the same
        whatever the number of processes: a tensor with examples along dim 0 (indices, or token windows),
        which the loop cuts into each process's micro-batches (`train.accumulate`)."""
        ...

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, step: int,
             part: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss over `batch` (one micro-batch of the step's batch), and sums (e.g. loss x examples,
        correct) the loop adds up between log lines, over processes too. `part` numbers the micro-batch
        within the step across processes, for random draws of its own; the loop passes it only when a step
        is split (a task without it trains in one process with one micro-batch)."""
        ...

    def log_due(self, step: int) -> bool:
        """A metric line at this step besides every `log_every` (the end of an epoch, the last step)."""
        ...

    def summarise(self, step: int, window: dict[str, float]) -> dict[str, Any]:
        """The metric line's fields from the sums since the last line (mean loss, accuracy, epoch)."""
        ...

    def eval_due(self, step: int) -> bool:
        """Whether held-out metrics are due at this step (optional: without it `evaluate` runs each step)."""
        ...

    def evaluate(self, model: torch.nn.Module, step: int) -> dict[str, Any]:
        """Held-out metrics (the line gets them), on the plain model with the full weights, in the main
        process only."""
        ...

    def finish(self, model: torch.nn.Module, out: Path, run: dict[str, Any]) -> dict[str, Any]:
        """Final metrics, after writing the bundle to `out`; `run` has train_wall_s, trained_steps, resumed."""
        ...
