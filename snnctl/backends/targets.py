"""The compile targets behind `snnctl compile` (entry-point group `snnctl.targets`).

A target is a function `compile(bundle, out, options=None) -> dict` (the `CompileTarget` contract in
`snnctl.contracts`): it writes its artifacts into `out`, runs the round-trip check and writes
`compile.json` (options, artifacts, round-trip report) last, so a folder with `compile.json` is a
finished compile. A target that also compiles converted SNNs says so itself (`takes_converted`);
`find_target` is the one way the commands look a target up.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch

from snnctl import __version__, contracts, registry
from snnctl.artifact import Bundle, load_bundle, write_atomic
from snnctl.backends.extract import ExportOptions
from snnctl.errors import UserError
from snnctl.paths import check_out

MANIFEST = "compile.json"


@dataclass
class CompileOptions:
    dt: float = 1e-4
    discretisation: str = "euler"
    reset: str | None = None
    dataset: str | None = None
    samples: int = 256
    T: int | None = None
    input_shape: tuple[int, ...] | None = None
    strict: bool = False
    seed: int = 0
    input_bits: int = 8
    weight_percentile: float = 100.0
    lava_samples: int = 64
    warnings: list[str] = field(default_factory=list)

    @property
    def export(self) -> ExportOptions:
        return ExportOptions(dt=self.dt, discretisation=self.discretisation, reset=self.reset)


@dataclass
class Inputs:
    """The batch the round trip runs: examples `[B, ...]`, and labels when they came from a dataset."""

    x: torch.Tensor
    labels: torch.Tensor | None
    source: str


def find_target(name: str, *, converted: bool = False) -> contracts.CompileTarget:
    """The installed compile target `name`, looked up before any work so a typo (or, with `converted`, a
    target that does not declare it takes converted SNNs) costs nothing."""
    table = registry.entries("targets")
    if name not in table:
        known = ", ".join(table) or "none"
        raise UserError(f"no compile target '{name}'", where="--target",
                        hint=f"installed: {known}; see `snnctl compile --list`")
    target = table[name].load()
    if converted and not contracts.takes_converted(target):
        able = [n for n, e in table.items() if contracts.takes_converted(e.load())]
        raise UserError(f"the {name} target does not take converted SNNs (per-channel thresholds, subtractive "
                        "reset)", where="--target", hint=f"use --target {' or '.join(able) or '(none installed)'}")
    return target


@dataclass
class ConvertedHandoff:
    """`convert --target`: the compile target, looked up before any work, and how a converted bundle
    reaches it (the conversion pipeline's `Handoff`)."""

    name: str
    fn: contracts.CompileTarget

    @classmethod
    def find(cls, name: str) -> ConvertedHandoff:
        return cls(name, find_target(name, converted=True))

    @property
    def pools_max(self) -> bool:
        return contracts.pools_max(self.fn)

    @property
    def signed_spikes(self) -> bool:
        return contracts.takes_signed_spikes(self.fn)

    def check(self, net: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
        check_converted(self.name, net, input_shape)

    def compile(self, bundle: Path, input_shape: tuple[int, ...] | None, dataset: str | None) -> dict[str, Any]:
        # without data the round trip runs random inputs: a few suffice, and a 224x224 resnet18 stays minutes
        options = CompileOptions(dataset=dataset, input_shape=input_shape, **({} if dataset else {"samples": 16}))
        return self.fn(bundle, bundle / f"compiled-{self.name}", options)


def _takes_converted(name: str) -> bool:
    entry = registry.entries("targets").get(name)
    return entry is not None and contracts.takes_converted(entry.load())


def check_converted(target: str, model: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
    """Refuse a converted SNN the target cannot map, naming the layer, before anything is written
    (through the check the target declares, if any)."""
    check = contracts.converted_check(find_target(target, converted=True))
    if check is not None:
        check(model, input_shape)


def _loihi_lowers(model: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
    """Loihi takes converted SNNs without max pooling or graded spikes, and says so by layer name."""
    from snnctl.backends import dag

    dag.lower(model, input_shape)


def spiking_bundle(path: Path, target: str) -> Bundle:
    bundle = load_bundle(path)
    if bundle.manifest["kind"] == "converted" and _takes_converted(target):
        signed = (bundle.manifest.get("conversion") or {}).get("signed")
        if signed and not contracts.takes_signed_spikes(registry.entries("targets")[target].load()):
            raise UserError(f"the {target} target takes no negative spikes; this converted SNN has signed neurons",
                            where=str(path), hint=f"convert without --signed to compile for {target}")
        return bundle
    if bundle.manifest["kind"] != "snn":
        raise UserError(f"the {target} target compiles SNN bundles; this one is {bundle.manifest['kind']}",
                        where=str(path), hint="train with an SNN recipe, or import a NIR graph with snnctl convert")
    return bundle


def round_trip_inputs(bundle: Bundle, options: CompileOptions) -> Inputs:
    """A dataset's test examples when one is named, random inputs of the model's shape otherwise."""
    from snnctl.data import load_as_recorded
    from snnctl.metrics.bench import check_compatible

    recorded = bundle.data
    if options.dataset:
        ds = load_as_recorded(options.dataset, recorded)
        check_compatible(bundle.model, ds, str(bundle.path))
        n = min(options.samples, len(ds.y_test))
        return Inputs(ds.x_test[:n].float(), ds.y_test[:n], f"{ds.name} test split, first {n}")
    shape = options.input_shape or recorded_shape(bundle)
    if shape is None:
        raise UserError("cannot tell the model's input shape", where=str(bundle.path),
                        hint="pass --dataset NAME or --input-shape C,H,W")
    if options.input_shape is not None:  # the user's shape; the others are the bundle's own
        check_fits(bundle, tuple(shape))
    gen = torch.Generator().manual_seed(options.seed)
    return Inputs(torch.rand(options.samples, *shape, generator=gen), None, f"{options.samples} uniform random inputs")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def first_layer_input(model: torch.nn.Module) -> str:
    """What the model's first weighted layer takes, in words (for a shape mismatch message)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return f"{module.in_channels} input channel(s)"
        if isinstance(module, torch.nn.Linear):
            return f"{module.in_features} input values"
    return "another shape"


def check_fits(bundle: Bundle, shape: tuple[int, ...]) -> None:
    """One example of `shape` through the model before anything is traced or written, so a wrong
    --input-shape is one line naming both shapes, not a tracing log."""
    T = bundle.model.T
    try:
        bundle.model.T = 1
        with torch.no_grad():
            bundle.model(torch.zeros(1, *shape))
    except (RuntimeError, ValueError, IndexError) as err:
        expected = recorded_shape(bundle)
        takes = _shape(expected) if expected else f"{first_layer_input(bundle.model)} in its first layer"
        raise UserError(f"--input-shape {_shape(shape)} does not fit the model, which takes {takes} "
                        f"({str(err).splitlines()[0]})", where=str(bundle.path),
                        hint=f"use --input-shape {','.join(map(str, expected))}" if expected
                        else "pass the shape the model was trained on, or --dataset NAME") from None
    finally:
        bundle.model.T = T


def recorded_shape(bundle: Bundle) -> tuple[int, ...] | None:
    """The input shape the bundle records: a NIR import's own, or that of the data it was made with."""
    if bundle.manifest["zoo"].get("config", {}).get("input_shape"):
        return tuple(bundle.manifest["zoo"]["config"]["input_shape"])
    recorded = bundle.data
    if recorded and recorded.get("name"):
        from snnctl.data import load_as_recorded

        return tuple(load_as_recorded(recorded["name"], recorded).input_shape)
    return None


def finish(stage: Path, out: Path, target: str, bundle: Bundle, options: CompileOptions, artifacts: dict[str, str],
           report: dict[str, Any], started: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write compile.json (last, into the staging folder) and return the summary the CLI prints."""
    opts = {k: v for k, v in asdict(options).items() if k != "warnings"}
    summary = {
        "target": target, "bundle": str(bundle.path), "out": str(out), "code_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "options": opts,
        "artifacts": artifacts, "roundtrip": report, "warnings": options.warnings,
        "compile_s": round(time.perf_counter() - started, 3), **(extra or {}),
    }
    write_atomic(stage / MANIFEST, (json.dumps(summary, indent=2, default=_jsonable) + "\n").encode())
    return summary


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """Compile into a hidden sibling folder and move it into place only when everything succeeded,
    so a failed compile leaves nothing behind and never half-replaces an earlier one."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST).is_file())):
        raise UserError("output folder exists and is not an earlier compile", where=str(out),
                        hint="choose another --out, or remove that folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield stage
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


Check = Callable[[Bundle, Path, CompileOptions, Inputs, int], tuple]


def run_target(target: str, bundle_path: Path | str, out: Path | str, options: CompileOptions | None,
               check: Check) -> dict[str, Any]:
    """Load, pick the round-trip inputs, let the target write and check into a staging folder, then
    write compile.json and move the folder into place."""
    started = time.perf_counter()
    options = options or CompileOptions()
    options.export.check()
    out = check_out(Path(out))
    bundle = spiking_bundle(Path(bundle_path), target)
    T = options.T or bundle.model.T
    bundle.model.T = T  # every target's reference run and encoding use the compile's T
    inputs = round_trip_inputs(bundle, options)
    with staging(out) as stage:
        report, artifacts, *extra = check(bundle, stage, options, inputs, T)
        summary = finish(stage, out, target, bundle, options, artifacts, report, started, extra[0] if extra else None)
    return summary


@contracts.compile_target(takes_converted=False)
def compile_nir(bundle: Path | str, out: Path | str, options: CompileOptions | None = None) -> dict[str, Any]:
    """Write model.nir, read it back, run it as an snnctl graph network and compare."""
    from snnctl.backends import nir_target

    return run_target("nir", bundle, out, options, nir_target.compile_and_check)


@contracts.compile_target(takes_converted=True)
def compile_onnx(bundle: Path | str, out: Path | str, options: CompileOptions | None = None) -> dict[str, Any]:
    """Write model.step.onnx and model.seq.onnx (Scan over time), check them with onnxruntime."""
    from snnctl.backends import onnx_target

    return run_target("onnx", bundle, out, options, onnx_target.compile_and_check)


@contracts.compile_target(takes_converted=True, check_converted=_loihi_lowers, max_pooling=False)
def compile_loihi(bundle: Path | str, out: Path | str, options: CompileOptions | None = None) -> dict[str, Any]:
    """Quantise to Loihi 2 fixed point, simulate bit-accurately, cross-check with lava fixed_pt, write
    netx HDF5 and a resource estimate."""
    from snnctl.backends import loihi_target

    return run_target("loihi", bundle, out, options, partial(loihi_target.compile_and_check, fixed=True))


@contracts.compile_target(takes_converted=False)
def compile_lava(bundle: Path | str, out: Path | str, options: CompileOptions | None = None) -> dict[str, Any]:
    """Build the lava process network in floating point and run it under Loihi2SimCfg(floating_pt)."""
    from snnctl.backends import loihi_target

    return run_target("lava", bundle, out, options, partial(loihi_target.compile_and_check, fixed=False))
