"""Several learner processes for one arm: torch.distributed + FSDP2, set up from the job's tasks.

A train job with `nodes × tasks_per_node` > 1 runs one learner per SLURM task (or per submitit
local task). They form one process group: rank 0 drives the rollouts, validation, logging and
checkpoints; every rank holds a shard of the policy, critic and reference (FSDP2 `fully_shard`),
takes its share of each minibatch and gets its shard of the summed gradient from the
reduce-scatter. PCGrad then works on those shards with `pcgrad.distributed_dot`, so its dot
products and norms are those of the whole gradient.

The rendezvous address is the first node's address as SLURM knows it (NodeAddr from
`scontrol show node`, never `hostname`: several SLURM nodes can share a host), the port comes
from the job id, above Linux's ephemeral range and below nothing else we use (Ray takes
12000-32767, see ray_cluster.PORT_BASE).
"""
from __future__ import annotations

import datetime
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

PORT_BASE, PORT_SLOTS = 61000, 4500  # 61000-65499: outside the ephemeral range 32768-60999


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(*names: str, default: int) -> int:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            return int(v)
    return default


def world_from_env() -> World:
    """This process's place among the job's tasks (SLURM, submitit local, or torchrun)."""
    size = _env_int("SLURM_NTASKS", "SUBMITIT_LOCAL_NTASKS", "WORLD_SIZE", default=1)
    rank = _env_int("SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID", "RANK", default=0)
    local = _env_int("SLURM_LOCALID", "SUBMITIT_LOCAL_LOCALID", "LOCAL_RANK", default=0)
    return World(rank, size, local)


def rendezvous_port(job_id: str | int) -> int:
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return PORT_BASE + int(digits) % PORT_SLOTS


def slurm_node_addr(node: str) -> str:
    out = subprocess.run(["scontrol", "-o", "show", "node", node], capture_output=True, text=True, timeout=60)
    m = re.search(r"\bNodeAddr=(\S+)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"learner rendezvous: scontrol shows no NodeAddr for node {node}: {out.stderr.strip()}")
    return m.group(1)


def rendezvous() -> tuple[str, int]:
    """(address, port) of rank 0: MASTER_ADDR/PORT if set (torchrun), else from SLURM or the local job."""
    if os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"):
        return os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if os.environ.get("SLURM_JOB_ID"):
        nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ["SLURM_JOB_NODELIST"]
        first = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               timeout=60, check=True).stdout.split()[0]
        return slurm_node_addr(first), rendezvous_port(os.environ["SLURM_JOB_ID"])
    return "127.0.0.1", rendezvous_port(os.environ.get("SUBMITIT_LOCAL_JOB_ID", os.getppid()))


def init(device: str, timeout_min: int = 60, single: bool = False) -> World:
    """Join the learners' process group. A single learner needs none, unless `single` (FSDP for
    mixed precision or CPU offload): then a one-process group on an in-memory store."""
    world = world_from_env()
    if dist.is_initialized() or not (world.distributed or single):
        return world
    if device == "cuda":
        torch.cuda.set_device(world.local_rank)
    if not world.distributed:
        dist.init_process_group("nccl" if device == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1)
        return world
    addr, port = rendezvous()
    dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://{addr}:{port}",
                            rank=world.rank, world_size=world.size, timeout=datetime.timedelta(minutes=timeout_min))
    return world


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(model: torch.nn.Module, param_dtype: torch.dtype | None = None, cpu_offload: bool = False) -> torch.nn.Module:
    """FSDP2: each decoder layer its own unit (its all-gather overlaps the previous layer's
    compute), then the rest. Parameters become DTensors sharded on dim 0 across the ranks.

    param_dtype: compute in this dtype (bf16) while the sharded master weights, gradients and
    optimizer state stay fp32, and gradients are reduced in fp32. cpu_offload: keep the shards,
    their gradients and the optimizer on the CPU (the step runs there), on the GPU only while a
    layer computes."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    if param_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for layer in _decoder_layers(model):
        fully_shard(layer, **kwargs)
    # The root reshards after forward too: a no-grad pass (old log-probs, values) is not followed
    # by a backward, and model.parameters() must be the sharded DTensors when the optimizer steps.
    fully_shard(model, reshard_after_forward=True, **kwargs)
    return model


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a transformers model (its `_no_split_modules` classes)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a (possibly DTensor) tensor; the tensor itself when not sharded."""
    return t.to_local() if hasattr(t, "to_local") else t


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the whole model's state on CPU, on rank 0 (for a sharded model a collective:
    other ranks get {})."""
    if not is_sharded(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_world_size() == 1:  # a one-rank "gather" hands back the live CPU shards themselves
        state = {k: v.clone() for k, v in state.items()}
    return state


def load_full_state_dict(model: torch.nn.Module, state: dict) -> None:
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name (FQN), whole, on rank 0: one format whatever
    the number of learners, so a run can resume with a different one."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=is_sharded(model)))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank (samples, validation metrics)."""
    if not world.distributed:
        return obj
    box = [obj if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(x: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_rows(rows: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """Rank r computed rows r, r + W, r + 2W, ... of an [n, ...] tensor: the whole tensor, on every rank."""
    if not world.distributed:
        return rows
    most = -(-n // world.size)
    padded = rows.new_zeros((most, *rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded.contiguous())
    out = rows.new_empty((n, *rows.shape[1:]))
    for r, p in enumerate(parts):
        count = len(range(r, n, world.size))
        out[r::world.size] = p[:count]
    return out
