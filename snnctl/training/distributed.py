"""Replicas of one training run across processes (torch.distributed): single, DDP or FSDP2.

The loop (snnctl.training.loop) asks a `Replicas` object for everything that differs between one
process and many: wrapping the model, the full weights for evaluation and the bundle, checkpoint state,
and sums of logged statistics. Each process is started by torchrun's launcher (snnctl.training.launch)
and reads its rank from the environment torchrun sets. Neuron state needs nothing here: every forward
pass starts its neurons from rest, so each replica's state belongs to its own examples and cannot leak
between micro-batches or be replicated instead of sharded.

Batch normalisation is made global across replicas (statistics summed over every process's examples),
so N processes compute what one process computes on the same global batch; torch's SyncBatchNorm
does this on CUDA only, so on CPU a small differentiable all-reduce does it here.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from snnctl.errors import UserError

TIMEOUT_ENV = "SNNCTL_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
_owned: dict[str, bool] = {}


@dataclass(frozen=True)
class World:
    """This process's place in the run, as torchrun's environment says (one process without it)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def rank_device(device: str, world: World) -> str:
    """Each process on its own GPU (cuda:LOCAL_RANK); more processes than GPUs is a user error."""
    if not device.startswith("cuda") or world.size == 1:
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise UserError(f"{world.size} processes per node but {count} GPU(s) on this one", where="--nproc",
                        hint=f"use --nproc {count} or fewer (or --nproc auto)")
    return f"cuda:{world.local_rank}"


class SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward is the all-reduce of the gradient: every process's loss reaches
    the inputs of every other through the shared statistics."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over every replica's examples: sums and squared sums are summed over the
    processes (differentiably), so forward and backward are those of one process on the global batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        c = x.shape[1]
        first = SumOverProcesses.apply(torch.cat([x.sum(dims), x.new_tensor([x.numel() / c])]))
        count = first[-1]
        mean = first[:c] / count
        shape = [1, c] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)  # two passes: E[x^2] - mean^2 loses the variance to rounding
        var = SumOverProcesses.apply((centred * centred).sum(dims)) / count
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1), alpha=m)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def globalise_batchnorm(model: nn.Module, device: str) -> nn.Module:
    """Every batch-norm layer computes its statistics over all replicas (same parameters and buffers)."""
    if device.startswith("cuda"):
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
                norm = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
                norm.weight, norm.bias = child.weight, child.bias
                norm.running_mean, norm.running_var = child.running_mean, child.running_var
                norm.num_batches_tracked = child.num_batches_tracked
                norm.train(child.training)
                setattr(parent, name, norm)
    return model


def state_options(**extra: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


class Replicas:
    """One process (strategy "single"); the base of the distributed strategies."""

    def __init__(self, world: World, device: str) -> None:
        self.world, self.device = world, device

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def full_model(self, model: nn.Module) -> nn.Module | None:
        """The plain model with the full weights, on the main process (None elsewhere). Collective."""
        return getattr(model, "module", model) if self.world.main else None

    def no_sync(self, model: nn.Module, last: bool) -> Any:
        """Gradients are exchanged on the last micro-batch of a step only (DDP's `no_sync`)."""
        sync_off = getattr(model, "no_sync", None)
        return sync_off() if (sync_off is not None and not last) else contextlib.nullcontext()

    def checkpoint_state(self, model: nn.Module, optimizer: torch.optim.Optimizer
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Full model and optimizer state (keyed by parameter name, whatever the strategy, so a run can
        resume with another number of processes). Collective; complete on the main process."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        options = state_options(cpu_offload=self.world.size > 1)
        return (get_model_state_dict(model, options=options),
                get_optimizer_state_dict(model, optimizer, options=options))

    def load_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                   optim: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(model, weights, options=state_options())
        set_optimizer_state_dict(model, optimizer, optim, options=state_options())

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Per-process sums (loss x examples, correct, seen) added over every process. Collective."""
        if self.world.size == 1:
            return values
        keys = sorted(values)  # every process logs the same keys (the same task on the same steps)
        total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return dict(zip(keys, total.tolist(), strict=True))


class DDPReplicas(Replicas):
    """DistributedDataParallel: a full copy per process, gradients averaged in buckets during backward."""

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        model = globalise_batchnorm(model, self.device)
        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)


class FSDPReplicas(Replicas):
    """FSDP2 (`fully_shard`): parameters, gradients and optimizer state sharded across processes. The
    main process keeps a plain copy that the full weights are gathered into for evaluation and the
    bundle (memory for one extra model there, none on the others)."""

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        model = globalise_batchnorm(model, self.device)
        generator = getattr(model, "generator", None)
        if generator is not None:
            model.generator = None  # a torch.Generator cannot be deep-copied
        self.plain = copy.deepcopy(model) if self.world.main else None
        if generator is not None:
            model.generator = generator
            if self.plain is not None:
                self.plain.generator = generator
        for unit in shard_units(model):
            fully_shard(unit)
        fully_shard(model)
        return model

    def no_sync(self, model: nn.Module, last: bool) -> Any:
        """FSDP2 reduce-scatters gradients on the last micro-batch only."""
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def full_model(self, model: nn.Module) -> nn.Module | None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        weights = get_model_state_dict(model, options=state_options(cpu_offload=True))
        if self.plain is None:
            return None
        self.plain.load_state_dict(weights)
        return self.plain


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules FSDP shards one by one (gathered just before use, freed after): the blocks of the
    model's outermost layer lists, wherever they sit (an SSM's blocks, a Hugging Face GPT-2's `h`, a
    CNN's top-level body). The rest (an embedding tied to the head, say) is the root's, gathered for
    the whole forward pass."""
    units: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList) or (module is model and isinstance(child, nn.Sequential)):
                units.extend(m for m in child if any(True for _ in m.parameters()))
            else:
                visit(child)

    visit(model)
    return units


def check_strategy(strategy: str, processes: int) -> None:
    """The recipe's strategy (its name checked by the recipe schema) must fit the number of processes:
    found before any is started."""
    if processes > 1 and strategy == "single":
        raise UserError(f"train.strategy is single but the run has {processes} processes", where="train.strategy",
                        hint="use --set train.strategy=ddp (or auto), or --nproc 1")
    if processes == 1 and strategy == "fsdp":
        raise UserError("train.strategy fsdp shards a model across processes, and this run has one",
                        where="train.strategy", hint="use --nproc 2 or more, or strategy single")


def start(strategy: str, device: str) -> tuple[Replicas, str]:
    """This process's replicas and device; joins the process group torchrun set up (gloo on CPU, nccl on
    CUDA), with a bounded timeout so a lost peer ends the run instead of hanging it."""
    world = current_world()
    check_strategy(strategy, world.size)
    if world.size == 1:
        return Replicas(world, device), device
    device = rank_device(device, world)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=timeout)
        _owned["group"] = True
    kind = FSDPReplicas if strategy == "fsdp" else DDPReplicas
    return kind(world, device), device


def stop(finished: bool = False) -> None:
    """End the process group `start` created (one a caller set up is the caller's). After a finished
    run every process first meets the others and drops what still holds the group's work (the DDP
    reducer), so none tears the group down while a peer's gloo threads still use it: that aborts a
    process at exit ("terminate called without an active exception"). After a failure it only ends
    the group: a barrier there would wait on a peer that is gone."""
    if not (_owned.pop("group", False) and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
        gc.collect()
    dist.destroy_process_group()
