"""`snnctl train --nproc N`: start N copies of `snnctl train` through torchrun's own launcher.

`torch.distributed.run` (what the `torchrun` command runs) is called in this process with the same
arguments a user would give torchrun, so `torchrun --nproc-per-node N -m snnctl train ...` and
`snnctl train --nproc N ...` start the same run, multi-node rendezvous included. What is added here
is the command-line contract: each process leaves its one error line in a folder instead of printing
it, and the launcher prints one line for the whole run (a user error first, else a process that was
killed, else the first failure) with exit code 2 or 1; torchrun's own tracebacks are not shown.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from snnctl.errors import RunFailed, UserError

if TYPE_CHECKING:
    from snnctl.config import Recipe

ERRORS_ENV = "SNNCTL_DIST_ERRORS"


@dataclass(frozen=True)
class Launch:
    """How to start the processes: per node, how many nodes, where they meet."""

    nproc: int
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_timeout_s: int = 60


def report_to_launcher(code: int, line: str) -> bool:
    """In a process started by `launch`, write its error line for the launcher; False elsewhere."""
    folder = os.environ.get(ERRORS_ENV)
    if not folder:
        return False
    rank = os.environ.get("RANK", "0")
    try:  # written whole, then renamed: the launcher never reads half a report
        staged = Path(folder) / f".rank-{rank}.tmp"
        staged.write_text(json.dumps({"code": code, "line": line}))
        staged.rename(Path(folder) / f"rank-{rank}.json")
    except OSError:
        return False
    return True


def auto_nproc(device: str) -> int:
    """`--nproc auto`: every visible GPU on CUDA; on CPU one process per two cores (each with two
    threads), since on CPU a process's intra-op threads already use the cores."""
    if device.startswith("cuda"):
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, (os.cpu_count() or 1) // 2)


def parse_nproc(value: str, device: str) -> int:
    if value == "auto":
        return auto_nproc(device)
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--nproc must be a positive integer or auto, not '{value}'", where="--nproc")
    n = int(value)
    if device.startswith("cuda"):
        import torch

        if n > torch.cuda.device_count():
            raise UserError(f"--nproc {n} is more processes than this node's {torch.cuda.device_count()} GPU(s)",
                            where="--nproc", hint="one process per GPU: use --nproc auto")
    return n


def check_endpoint(endpoint: str) -> None:
    """A rendezvous endpoint this node would host (a local address) must have its port free."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--rdzv-endpoint '{endpoint}' is not HOST:PORT", where="--rdzv-endpoint")
    try:
        local = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback or host == socket.gethostname()
    except (OSError, ValueError):
        raise UserError(f"--rdzv-endpoint host '{host}' does not resolve", where="--rdzv-endpoint") from None
    if not local:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            raise UserError(f"port {port} on {host} is already in use", where="--rdzv-endpoint",
                            hint="choose a free port (or leave --rdzv-endpoint out on one node)") from None


def torchrun_args(launch: Launch, command: list[str]) -> list[str]:
    """The torchrun command line for `python -m snnctl <command>` on this node."""
    args = [f"--nproc-per-node={launch.nproc}", f"--nnodes={launch.nnodes}", "--max-restarts=0"]
    if launch.rdzv_endpoint:
        args += ["--rdzv-backend=c10d", f"--rdzv-endpoint={launch.rdzv_endpoint}", f"--node-rank={launch.node_rank}",
                 f"--rdzv-conf=join_timeout={launch.rdzv_timeout_s},read_timeout={launch.rdzv_timeout_s}",
                 "--rdzv-id=snnctl"]
    else:
        args.append("--standalone")
    return [*args, "-m", "snnctl", *command]


def launch(launch: Launch, command: list[str], *, debug: bool = False) -> None:
    """Run `snnctl <command>` in `launch.nproc` processes on this node and wait for all of them; a
    failure of any ends the run (the others are stopped by torchrun) as one UserError or RunFailed."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousError

    if launch.nnodes > 1 and not launch.rdzv_endpoint:
        raise UserError(f"--nnodes {launch.nnodes} needs --rdzv-endpoint HOST:PORT where the nodes meet",
                        where="--rdzv-endpoint", hint="the same endpoint on every node; node 0 hosts it")
    if launch.rdzv_endpoint and launch.node_rank == 0:
        check_endpoint(launch.rdzv_endpoint)
    if not debug:
        logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // launch.nproc)))
    with tempfile.TemporaryDirectory(prefix="snnctl-dist-") as folder:
        os.environ[ERRORS_ENV] = folder
        was_debug = os.environ.get("SNNCTL_DEBUG")
        if debug:
            os.environ["SNNCTL_DEBUG"] = "1"  # the processes print their tracebacks too
        try:
            torchrun.run(torchrun.parse_args(torchrun_args(launch, command)))
        except ChildFailedError as err:
            failed = sorted(err.failures.items(), key=lambda item: (item[1].timestamp, item[0]))
            raise failure(Path(folder), {rank: f.exitcode for rank, f in failed}) from None
        except SignalException:  # Ctrl-C or SIGTERM to the launcher: torchrun has stopped the processes
            raise KeyboardInterrupt from None
        except RendezvousError as err:  # a node that never came, a store that does not answer
            raise RunFailed(f"the processes could not start together ({type(err).__name__}: {err})") from None
        finally:
            os.environ.pop(ERRORS_ENV, None)
            if was_debug is None:
                os.environ.pop("SNNCTL_DEBUG", None)
            else:
                os.environ["SNNCTL_DEBUG"] = was_debug
        sys.stdout.flush()


def failure(folder: Path, exitcodes: dict[int, int]) -> Exception:
    """One error for the run from the processes' error lines: a user error first; then a process that
    ended without a word (killed: the others' errors follow from it); then the first to fail
    (`exitcodes` is in order of failure)."""
    reports = {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in folder.glob("rank-*.json")}
    for _rank, report in sorted(reports.items()):
        if report["code"] == 2:
            return UserError(report["line"].removeprefix("snnctl: error: "))
    resume = "--resume continues from the last checkpoint"
    silent = [(rank, code) for rank, code in exitcodes.items() if rank not in reports]
    rank, code = (silent or list(exitcodes.items()) or [(min(reports, default=0), 1)])[0]
    if rank in reports:
        return RunFailed(f"process {rank}: {reports[rank]['line'].removeprefix('snnctl: failed: ')} ({resume})")
    return RunFailed(f"process {rank} ended with {ending(code)}; the others were stopped ({resume})")


def ending(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def check_recipe(recipe: Recipe, processes: int) -> None:
    """What the recipe says about splitting, checked before any process starts (the processes check
    the data-dependent rest, such as the last batch of an epoch, themselves)."""
    from snnctl.training.distributed import check_strategy

    t = recipe.train
    check_strategy(t.strategy, processes)
    if t.batch_size % (processes * t.accumulate):
        raise UserError(f"{t.batch_size} examples do not divide into {processes} processes x "
                        f"{t.accumulate} micro-batches", where="train.batch_size",
                        hint=f"use a batch size divisible by {processes * t.accumulate}")


def train_in_processes(plan: Launch, recipe: Recipe, options: list[str], out: Path, *, debug: bool) -> None:
    """`snnctl train` on `plan.nproc` processes: the recipe's split and `out` checked here, before any
    process starts; `options` are the `train` options each process gets (recipe, --set, device...)."""
    from snnctl.paths import check_out

    check_recipe(recipe, plan.nproc * plan.nnodes)
    check_out(out)
    launch(plan, ["train", *options, "--out", str(out)], debug=debug)
