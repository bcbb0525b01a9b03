"""The convert and calibrate pipelines behind `snnctl convert` and `snnctl calibrate`, as library calls.

Each checks its inputs (method, target, output folder, data against the model) before any work,
runs, writes its bundle and returns a typed result; printing is the caller's business.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from snnctl import registry
from snnctl.conversion import bundle as B
from snnctl.conversion import calibrate as K
from snnctl.conversion import convert as C
from snnctl.conversion.graph import Report, neurons
from snnctl.conversion.methods import DEFAULT_STAGES, STAGES
from snnctl.conversion.source import Source, resolve
from snnctl.data import Dataset, load_as_recorded, load_dataset, require_classification
from snnctl.errors import UserError
from snnctl.metrics.bench import check_compatible
from snnctl.paths import check_out
from snnctl.zoo import Network

DATA_FREE_SAMPLES = 32  # uniform random inputs behind data-free thresholds
IMAGENET_SIZE = 224  # the input side the ImageNet stem is built for


class Handoff(Protocol):
    """A compile target the converted bundle is handed to (built by the caller, which knows the
    backends; conversion does not import them)."""

    name: str
    signed_spikes: bool  # whether it takes spikes of -1 (signed neurons)

    def check(self, net: Network, input_shape: tuple[int, ...]) -> None:
        """Refuse, before the bundle is written, a model the target cannot map."""

    def compile(self, bundle: Path, input_shape: tuple[int, ...] | None, dataset: str | None) -> dict[str, Any]:
        """Compile the written bundle; the summary goes into the result."""


@dataclass(frozen=True)
class ConvertJob:
    """Everything `convert` needs; `target` was looked up by the caller before any work."""

    model: str
    options: C.Options = field(default_factory=C.Options)
    weights: Path | None = None
    dataset: str | None = None
    samples: int = 512
    zoo_config: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None  # for data-free thresholds when no dataset is given
    target: Handoff | None = None
    out: Path | None = None
    device: str = "cpu"


@dataclass
class ConvertResult:
    out: Path
    net: Network
    report: Report
    weights: str
    spikes: str
    metrics: dict[str, Any]
    dataset: str | None
    compiled: dict[str, Any] | None
    warnings: list[str]

    def summary(self, method: str) -> dict[str, Any]:
        """The JSON `snnctl convert --json` prints."""
        return {"out": str(self.out), "method": method, "T": self.net.T, "spikes": self.spikes,
                "hybrid": bool(self.report.unsupported), "weights": self.weights, **self.metrics,
                "report": {k: len(v) for k, v in self.report.as_dict().items()}, "compiled": self.compiled,
                **({"warnings": self.warnings} if self.warnings else {})}


def default_out(model: str) -> Path:
    name = Path(model).name if Path(model).exists() else model.replace("/", "-")
    return Path("runs") / f"{name}-snn"


def _is_zoo(model: str) -> bool:
    return model in registry.entries("models") and not Path(model).exists()


def data_free_shape(source: Source, given: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The input shape of synthetic calibration inputs: --input-shape, else the ImageNet stem's
    3x224x224 (the size that stem is built for), else unknown (None)."""
    if given is not None:
        return given
    if source.record.get("type") != "zoo":
        return None
    params = inspect.signature(registry.load("models", source.record["name"])).parameters
    config = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    config.update(source.record.get("config") or {})
    if config.get("stem_type") == "imagenet" and "in_channels" in config:
        return (int(config["in_channels"]), IMAGENET_SIZE, IMAGENET_SIZE)
    return None


def _data_free_inputs(source: Source, job: ConvertJob) -> tuple[torch.Tensor, str]:
    """Uniform random inputs in [0, 1] (the pixel range), seeded as compile's round-trip inputs are, so
    the compiled check sees the activity the thresholds were set for. No accuracy comes from them."""
    shape = data_free_shape(source, job.input_shape)
    if shape is None:
        raise UserError(f"method '{job.options.method}' sets thresholds from activations and needs calibration "
                        "data", hint="add --dataset NAME (e.g. --dataset digits), or --input-shape C,H,W for "
                        "data-free thresholds")
    x = torch.rand(DATA_FREE_SAMPLES, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            source.body(x[:1])
    except RuntimeError as err:
        raise UserError(f"model does not accept inputs of shape {shape} ({str(err).splitlines()[0]})",
                        where="--input-shape", hint="give the shape the model takes, e.g. --input-shape 3,224,224"
                        ) from None
    note = (f"no --dataset: thresholds are data-free (99.9th percentile of activations on {DATA_FREE_SAMPLES} "
            f"uniform random inputs in [0, 1] of shape {'x'.join(map(str, shape))}); accuracy is unmeasured")
    return x, note


THRESHOLD_FLOOR = 0.05  # data-free: no threshold below this fraction of its layer's median


@torch.no_grad()
def floor_thresholds(body: torch.nn.Module) -> None:
    """Random inputs leave some channels nearly silent, and their tiny percentile thresholds would turn
    any real input into a flood of spikes (and overflow fixed-point state): lift each threshold to at
    least THRESHOLD_FLOOR of its layer's median."""
    for _, neuron in neurons(body):
        theta = neuron.theta
        neuron.theta = torch.clamp(theta, min=THRESHOLD_FLOOR * float(theta.median()))


def _warnings(source: Source, report: Report) -> list[str]:
    found = []
    if source.weights.startswith("random init"):
        found.append("the ANN's weights are untrained (random init, no --weights given): its outputs mean nothing")
    found += [f"{r['op']} replaced by {r['as']}: {r['why']}" for r in report.replaced]
    return found


def convert_model(job: ConvertJob, on_report: Callable[[ConvertResult], None] | None = None) -> ConvertResult:
    """Resolve the ANN, check the data fits it, rewrite and balance it, measure it against T, write the
    bundle and hand it to the compile target. `on_report` sees the result before measuring starts."""
    from snnctl.artifact import save_bundle

    C.check_options(job.options)
    if job.options.signed and job.target is not None and not job.target.signed_spikes:
        raise UserError(f"the {job.target.name} target takes no negative spikes, and signed neurons emit them",
                        where="--signed", hint="drop --signed for this target")
    out = check_out(job.out or default_out(job.model))
    ds = require_classification(load_dataset(job.dataset), job.dataset) if job.dataset and _is_zoo(job.model) \
        else None
    source = resolve(job.model, weights=job.weights, config=job.zoo_config, ds=ds)
    if job.dataset and ds is None:
        ds = require_classification(load_as_recorded(job.dataset, source.data), job.dataset)
    notes: list[str] = []
    if ds is not None:
        check_compatible(source.body, ds, job.model, B.MISFIT_HINT)  # before any work, naming both shapes
        calib = B.calibration_split(ds, job.samples)
        calib_x: torch.Tensor | None = calib[0]
    elif C.needs_data(job.options, source.body):
        calib_x, note = _data_free_inputs(source, job)
        notes.append(note)
    else:
        calib_x = None

    started = time.perf_counter()
    body, report = C.convert(source.body, job.options, calib_x)
    if ds is None and calib_x is not None:
        floor_thresholds(body)
    net = Network(body, kind="converted", encoding="direct", T=job.options.T).to(job.device)
    metrics: dict[str, Any] = {"convert_s": round(time.perf_counter() - started, 3)}
    result = ConvertResult(out, net, report, source.weights, B.spike_kind(net), metrics,
                           ds.name if ds is not None else None, None, _warnings(source, report) + notes)
    if on_report is not None:
        on_report(result)
    if ds is not None:
        metrics.update(_measure(net, body, ds, job.options.T, job.device))
    net.cpu()
    shape = tuple(ds.x_test.shape[1:]) if ds is not None else (tuple(calib_x.shape[1:]) if calib_x is not None
                                                              else None)
    if job.target is not None and shape is not None:
        job.target.check(net, shape)
    info = {"method": job.options.method,
            "percentile": job.options.percentile if C.needs_data(job.options, source.body) else None,
            "calibration_samples": len(calib_x) if ds is not None and calib_x is not None else 0,
            "data_free": ds is None and calib_x is not None,
            "graded_levels": C.graded_levels(job.options, source.body), "maxpool": job.options.maxpool,
            "signed": job.options.signed,
            "hybrid": bool(report.unsupported), "weights": source.weights, "report": report.as_dict(),
            "data": {"name": ds.name, **(source.data or {})} if ds is not None else None, "calibration": [],
            "warnings": result.warnings}
    save_bundle(out, net, B.manifest_for(net, source.record, info, metrics, source.parent),
                extra=B.parent_tokenizer(source.parent))
    if job.target is not None:
        result.compiled = job.target.compile(out, None if ds is not None else shape, ds.name if ds else None)
    return result


def _measure(net: Network, body: torch.nn.Module, ds: Dataset, T: int, device: str) -> dict[str, Any]:
    """Test accuracy of the ANN and of the SNN at every T of the table (one run serves all)."""
    x_test, y_test = ds.x_test.to(device), ds.y_test.to(device)
    by_T = C.accuracy_by_T(net, x_test, y_test, tuple(sorted({*C.TABLE_T, T})))
    return {"dataset": ds.name, "test_samples": len(ds.y_test), "ann_acc": C.ann_accuracy(body, x_test, y_test),
            "acc_by_T": {str(k): by_T[k] for k in C.TABLE_T}, "test_acc": by_T[T]}


# ---------------------------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrateJob:
    bundle: Path
    dataset: str
    stages: Sequence[str] = DEFAULT_STAGES
    samples: int = 512
    T: int | None = None
    population: int = 8
    generations: int = 5
    spike_budget: float | None = None
    out: Path | None = None
    device: str = "cpu"


@dataclass
class CalibrateResult:
    out: Path
    dataset: str
    T: int
    readout_delay: int
    stages: list[dict[str, Any]]
    metrics: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The JSON `snnctl calibrate --json` prints."""
        return {"out": str(self.out), "T": self.T, "readout_delay": self.readout_delay, "stages": self.stages,
                **self.metrics}


def parse_stages(text: str) -> list[str]:
    """'threshold,bias' -> the stages, each checked against the stage table."""
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"unknown calibration stage '{unknown[0] if unknown else text}'",
                        hint=f"choose from: {', '.join(STAGES)}")
    return stages


StageHook = Callable[[str, str], None]  # (stage, progress text)


@dataclass
class CalibrationPlan:
    """A calibration whose inputs are all checked: the loaded SNN, its data, where it will be written."""

    job: CalibrateJob
    net: Network
    manifest: dict[str, Any]
    data: K.Data
    dataset: str
    out: Path


def plan_calibration(job: CalibrateJob) -> CalibrationPlan:
    """Check every input (stages, bundle kind, --out, data against the model) before any work."""
    from snnctl.artifact import load_bundle

    parse_stages(",".join(job.stages))  # a job built in code is checked as the command line is
    source = load_bundle(job.bundle)
    kind = source.manifest["kind"]
    if kind != "converted":
        hint = "convert it first: snnctl convert BUNDLE --dataset D" if kind == "ann" else \
            "calibration tunes converted SNNs; a directly trained SNN is tuned by training"
        raise UserError(f"this bundle is not a converted SNN (kind '{kind}')", where=str(job.bundle), hint=hint)
    out = check_out(job.out or job.bundle.with_name(job.bundle.name + "-cal"), source=job.bundle)
    ds = require_classification(load_as_recorded(job.dataset, source.data),
                                job.dataset)
    net = source.model.to(job.device)
    if job.T is not None:
        net.T = job.T
    check_compatible(net, ds, str(job.bundle), B.MISFIT_HINT)
    x_cal, y_cal = B.calibration_split(ds, job.samples)
    dev = job.device
    data = K.Data(x_cal.to(dev), y_cal.to(dev), ds.x_test.to(dev), ds.y_test.to(dev))
    return CalibrationPlan(job, net, source.manifest, data, ds.name, out)


def calibrate_bundle(plan: CalibrationPlan, on_stage: StageHook | None = None,
                     on_done: Callable[[str], None] | None = None) -> CalibrateResult:
    """Run each stage (kept only when the SNN follows its ANN at least as well), then measure and write."""
    from snnctl.artifact import save_bundle

    job, net, data = plan.job, plan.net, plan.data
    records: list[dict[str, Any]] = []
    for stage in job.stages:
        if on_stage is not None:
            on_stage(stage, stage)

        def on_generation(g: int, best: dict[str, Any], stage: str = stage) -> None:
            if on_stage is not None:
                on_stage(stage, f"{stage} gen {g}/{job.generations}: cal acc {best['cal_acc']:.3f}, "
                         f"{best['spikes_per_sample']:.0f} spikes, T={best['T']}")

        hseo = {"population": job.population, "generations": job.generations, "budget": job.spike_budget}
        records.append(K.run_stage(stage, net, data, hseo, on_generation))
        if on_done is not None:
            on_done(stage)

    table_T = C.accuracy_by_T(net, data.x_test, data.y_test, C.TABLE_T, net.readout_delay / net.T)
    metrics = dict(plan.manifest.get("metrics") or {})
    metrics.update(acc_by_T={str(k): v for k, v in table_T.items()},
                   test_acc=K.accuracy_at(net, data.x_test, data.y_test))
    info = dict(plan.manifest["conversion"])
    info["calibration"] = [*info.get("calibration", []), {"dataset": plan.dataset, "samples": len(data.x_cal),
                                                          "stages": records}]
    net.cpu()
    save_bundle(plan.out, net, B.manifest_for(net, info.pop("source"), info, metrics, str(job.bundle)),
                extra=B.parent_tokenizer(str(job.bundle)))
    return CalibrateResult(plan.out, plan.dataset, net.T, net.readout_delay, records, metrics)
