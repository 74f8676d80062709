"""Several learner processes for one arm: torch.distributed + FSDP2, set up from the job's tasks.

A train job with `nodes × tasks_per_node` > 1 runs one learner per SLURM task (or per submitit
local task). They form one process group: rank 0 drives the rollouts, validation, logging and
checkpoints; every rank holds a shard of the policy, critic and reference (FSDP2 `fully_shard`),
takes its share of each minibatch and gets its shard of the summed gradient from the
reduce-scatter. A multi-task method then works on those shards (aggregation.py): one all-reduce of
the shards' [T, T] Gramian contributions gives every rank the whole gradient's inner products.

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
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

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
        first = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()[0]
        return slurm_node_addr(first), rendezvous_port(os.environ["SLURM_JOB_ID"])
    return "127.0.0.1", rendezvous_port(os.environ.get("SUBMITIT_LOCAL_JOB_ID", os.getppid()))


# Collectives wait this long: the other learners wait in one while rank 0 alone validates, which
# can take hours on a large model. A crashed rank does not leave them waiting: srun ends the job's
# tasks (--kill-on-bad-exit=1 in the templates).
TIMEOUT_MIN = 12 * 60


def init(device: str, timeout_min: int = TIMEOUT_MIN, single: bool = False) -> World:
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
    dist.init_process_group(
        "nccl" if device == "cuda" else "gloo",
        init_method=f"tcp://{addr}:{port}",
        rank=world.rank,
        world_size=world.size,
        timeout=datetime.timedelta(minutes=timeout_min),
    )
    return world


def shutdown(wait_for_others: bool = True) -> None:
    """Leave the process group; after a good run once every rank is done (the barrier waits for
    all earlier collectives), so no gloo worker thread is still busy when the interpreter exits.
    A failing rank leaves at once: srun's --kill-on-bad-exit then ends the others."""
    if dist.is_initialized():
        if wait_for_others:
            dist.barrier()
        dist.destroy_process_group()


def shard(model: torch.nn.Module, param_dtype: torch.dtype | None = None, cpu_offload: bool = False) -> torch.nn.Module:
    """FSDP2: each decoder layer its own unit (its all-gather overlaps the previous layer's
    compute), then the rest. Parameters become DTensors sharded on dim 0 across the ranks.

    param_dtype: compute in this dtype (bf16) while the sharded master weights, gradients and
    optimizer state stay fp32, and gradients are reduced in fp32. cpu_offload: keep the shards,
    their gradients and the optimizer on the CPU (the step runs there), on the GPU only while a
    layer computes."""
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


def flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    """The (this rank's shard of the) gradient of params as one flat vector; zeros where none."""
    return torch.cat(
        [(local(p.grad) if p.grad is not None else torch.zeros_like(local(p))).reshape(-1) for p in params]
    )


def set_flat_grad(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat (this rank's shard of the) gradient into params' .grad (flat_grad's inverse)."""
    offset = 0
    for p in params:
        shard = local(p)
        g = flat[offset : offset + shard.numel()].view_as(shard).clone()
        offset += shard.numel()
        if hasattr(p, "device_mesh"):  # an FSDP2 shard (DTensor)
            g = DTensor.from_local(g, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
        p.grad = g


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


# Whole tensors from FSDP2 shards, with plain synchronous collectives. FSDP2 shards dim 0 the way
# torch.chunk splits it (rank r holds chunk r, possibly empty); gathering pads each chunk to the
# chunk size. (torch.distributed.checkpoint's full-state helpers go through DTensor's asynchronous
# functional collectives: on CPU/gloo we saw processes abort at exit while a gloo worker thread was
# still releasing such a collective's tensors, and one segfault during the gather.)


def _chunk(n: int, world: int, rank: int) -> tuple[int, int]:
    size = -(-n // world)
    start = min(rank * size, n)
    return start, min(start + size, n)


def gather_full(t: torch.Tensor) -> torch.Tensor | None:
    """The whole of tensor `t` on CPU, on rank 0 (None elsewhere). A DTensor shard: a collective."""
    if not hasattr(t, "device_mesh"):
        return t.detach().to("cpu", copy=True) if not dist.is_initialized() or dist.get_rank() == 0 else None
    shard, world, rank = t.to_local().detach(), dist.get_world_size(), dist.get_rank()
    if world == 1:
        return shard.to("cpu", copy=True)
    size = -(-t.shape[0] // world)
    padded = shard.new_zeros((size, *t.shape[1:]))
    padded[: shard.shape[0]] = shard
    parts = [torch.empty_like(padded) for _ in range(world)] if rank == 0 else None
    dist.gather(padded, parts, dst=0)
    if rank != 0:
        return None
    sizes = [end - start for start, end in (_chunk(t.shape[0], world, r) for r in range(world))]
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]).to("cpu")


def _set_full(target: torch.Tensor, full: torch.Tensor) -> None:
    """Copy this rank's part of the whole tensor `full` into `target` (a DTensor shard or a plain tensor)."""
    with torch.no_grad():
        if hasattr(target, "device_mesh"):
            start, end = _chunk(full.shape[0], dist.get_world_size(), dist.get_rank())
            target.to_local().copy_(full[start:end])
        else:
            target.copy_(full)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the whole model's state on CPU, on rank 0 (for a sharded model a collective:
    other ranks get {})."""
    if not is_sharded(model):
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    state = {k: gather_full(v) for k, v in model.state_dict().items()}  # same order on every rank
    return {k: v for k, v in state.items() if v is not None}


def load_full_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Load a whole state (every rank reads the same file) into a model, sharded or not."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise KeyError(f"state has no {', '.join(missing[:5])}")
    for k, v in own.items():
        _set_full(v, state[k])


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name, whole, on rank 0 (a collective when the
    model is sharded): one format whatever the number of learners, so a run can resume with
    another number of them."""
    names = {id(p): n for n, p in model.named_parameters()}
    state = {}
    for p, st in optimizer.state.items():  # same parameter order on every rank
        state[names[id(p)]] = {k: gather_full(v) if torch.is_tensor(v) else v for k, v in st.items()}
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]}
        for g in optimizer.param_groups
    ]
    return {"state": state, "param_groups": groups}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load `optimizer_state`'s whole, name-keyed state: each rank keeps its own chunk."""
    if all(isinstance(i, int) for g in state["param_groups"] for i in g["params"]):
        optimizer.load_state_dict(state)  # torch's own index-keyed format (checkpoints of one unsharded learner)
        return
    params = dict(model.named_parameters())
    index = {n: i for i, n in enumerate(n for g in state["param_groups"] for n in g["params"])}
    native_state = {}
    for name, st in state["state"].items():
        p = params[name]
        entry = {}
        for k, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0 and hasattr(p, "device_mesh"):
                shard = torch.zeros_like(p.to_local(), dtype=v.dtype)
                start, end = _chunk(v.shape[0], dist.get_world_size(), dist.get_rank())
                shard.copy_(v[start:end])
                v = DTensor.from_local(shard, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
            entry[k] = v
        native_state[index[name]] = entry
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [index[n] for n in g["params"]]}
        for g in state["param_groups"]
    ]
    optimizer.load_state_dict({"state": native_state, "param_groups": groups})


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_ for FSDP2 shards, with one synchronous all-reduce: the
    norm of the whole gradient, every shard scaled by the same factor. Returns the norm."""
    grads = [local(p.grad) for p in params if p.grad is not None]
    sq = torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(sq)
    norm = sq.sqrt()
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return float(norm)


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
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded.contiguous())
    out = rows.new_empty((n, *rows.shape[1:]))
    for r, p in enumerate(parts):
        count = len(range(r, n, world.size))
        out[r :: world.size] = p[:count]
    return out
