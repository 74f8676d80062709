"""Ray inside a SLURM allocation: ports, template variables, joining, placing actors.

A stage that sets `template="ray.sh.j2"` and `template_vars=ray_template_vars(resources)` gets a
Ray cluster in its job (templates/ray.sh.j2): a head on the first node, a worker on every other
one, each Ray node carrying a custom resource `slurm_node:<name>` (several Ray nodes may share an
address, as on the test cluster, so the SLURM name is how a node is told apart). The driver (the
unit's entry point) then calls `connect()` and `spread(...)`.

    from orchestrator.kinds.train.ray_cluster import connect, spread
    connect()                                   # the job's cluster, or a local one elsewhere
    actors = spread(RolloutWorker, 4, model_dir)  # 4 actors round-robin over all alive nodes

Ray is imported inside the functions only: kinds call `ray_template_vars` while planning, and
the CLI's render/submit/status must not import Ray.
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from typing import Any

from orchestrator.core import paths
from orchestrator.core.errors import UserError

NODE_RESOURCE_PREFIX = "slurm_node:"  # custom resource naming the SLURM node of a Ray node

# Port layout. Each Ray node of a job gets its own block of ports: the fixed ones below, then a
# range for Ray's worker processes. Blocks lie between PORT_BASE and Linux's default ephemeral
# range (32768-60999), where the kernel picks outgoing ports.
PORT_BASE = 12000
PORT_LIMIT = 32768
FIXED_PORTS = (  # `ray start` flag for offsets 0, 1, ...
    "port",  # GCS (head only)
    "node-manager-port",
    "object-manager-port",
    "dashboard-port",  # head only
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",  # also the metrics agent
    "runtime-env-agent-port",
    "metrics-export-port",
    "ray-client-server-port",  # head only
)
FIRST_WORKER_OFFSET = 10
DEFAULT_WORKER_PORTS = 100  # Ray worker processes (tasks, actors) a node can run at once
MAX_PORT_SHIFTS = 8  # blocks tried when the job's own one is in use on the host
MAX_TEMP_ROOT_CHARS = 40  # Ray's unix sockets live under the temp dir; their paths must stay < 108


def port_block(
    job_id: int, node_index: int, n_nodes: int, worker_ports: int = DEFAULT_WORKER_PORTS, shift: int = 0
) -> dict[str, int]:
    """Ports of Ray node `node_index` of job `job_id`: `ray start` flag → port.

    Slot = ((job_id + shift) × n_nodes + node_index) mod slots: the Ray nodes of one job never
    share a slot, and neither do two jobs whose ids are less than slots / n_nodes apart (about 180
    single-node jobs with the defaults). `shift` moves a node past a block something else on the
    host already uses (`free_port_block`).
    """
    if worker_ports < 1:
        raise ValueError(f"worker_ports must be at least 1, got {worker_ports}")
    block = FIRST_WORKER_OFFSET + worker_ports
    slots = (PORT_LIMIT - PORT_BASE) // block
    if not 0 <= node_index < n_nodes:
        raise ValueError(f"node index {node_index} outside 0..{n_nodes - 1}")
    if n_nodes > slots:
        raise ValueError(
            f"{n_nodes} nodes need {n_nodes} port blocks of {block}, but only {slots} fit "
            f"between {PORT_BASE} and {PORT_LIMIT}: lower worker_ports"
        )
    base = PORT_BASE + (((job_id + shift) * n_nodes + node_index) % slots) * block
    ports = {flag: base + i for i, flag in enumerate(FIXED_PORTS)}
    ports["min-worker-port"] = base + FIRST_WORKER_OFFSET
    ports["max-worker-port"] = base + block - 1
    return ports


def free_port_block(
    job_id: int, node_index: int, n_nodes: int, worker_ports: int = DEFAULT_WORKER_PORTS
) -> tuple[dict[str, int], list[str]]:
    """The first of the node's candidate blocks (shift 0, 1, ...) with no port in use on this host,
    and the busy ports of the blocks skipped. Deterministic for a given host state, so the head's
    GCS port computed in the batch step is the one the head then takes. A daemon that listens
    inside the range (the test cluster's slurmd on 17001/17002, say) costs a shift, not the job."""
    skipped: list[str] = []
    for shift in range(MAX_PORT_SHIFTS):
        ports = port_block(job_id, node_index, n_nodes, worker_ports, shift)
        busy = check_free(ports)
        if not busy:
            return ports, skipped
        skipped += busy
    raise UserError(
        f"ray: no free port block for job {job_id}'s Ray node {node_index} after {MAX_PORT_SHIFTS} tries "
        f"(busy: {', '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}); resubmit, or change worker_ports"
    )


def check_free(ports: dict[str, int]) -> list[str]:
    """Ports of the block that something on this host already listens on (gRPC servers bind with
    SO_REUSEPORT, so two Ray nodes on one port would not fail: they would silently share it)."""
    busy = []
    numbers = sorted(set(ports.values()) | set(range(ports["min-worker-port"], ports["max-worker-port"] + 1)))
    for port in numbers:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
            try:
                s.bind(("", port))
            except OSError:
                busy.append(str(port))
    return busy


def ray_template_vars(
    resources,
    *,
    join_timeout_s: int = 300,
    worker_ports: int = DEFAULT_WORKER_PORTS,
    object_store_mb: int | None = None,
    noset_cuda_visible_devices: bool = False,
    include_dashboard: bool = False,
    head_args: tuple[str, ...] = (),
    worker_args: tuple[str, ...] = (),
    temp_root: str | None = None,
    learner_gpus_per_node: int = 0,
) -> dict[str, Any]:
    """`Stage.template_vars` for templates/ray.sh.j2, from the stage's `Resources`.

    learner_gpus_per_node: GPUs the job's own tasks use on every node (one per learner); Ray is
    given only the others, so its actors never land on a learner's GPU.

    noset_cuda_visible_devices: keep Ray from rewriting CUDA_VISIBLE_DEVICES in its workers, for
    vLLM, which picks its GPUs itself. head_args / worker_args: extra `ray start` arguments.
    """
    root = temp_root or str(paths.ray_temp_root())
    if len(root) > MAX_TEMP_ROOT_CHARS or not root.startswith("/"):
        raise UserError(
            f"Ray temp root {root!r} must be an absolute path of at most {MAX_TEMP_ROOT_CHARS} characters "
            "(Ray's socket paths under it are limited to 107): set ORCH_RAY_TMP to a short one, e.g. /tmp"
        )
    if join_timeout_s < 1:
        raise UserError(f"Ray join timeout must be at least 1 second, got {join_timeout_s}")
    port_block(0, resources.nodes - 1, resources.nodes, worker_ports)  # raises when the layout cannot fit
    if not 0 <= learner_gpus_per_node <= resources.gpus_per_node:
        raise UserError(f"{learner_gpus_per_node} learner GPUs per node, but the job has {resources.gpus_per_node}")
    return {
        "ray_num_cpus": resources.tasks_per_node * resources.cpus_per_task,
        "ray_num_gpus": resources.gpus_per_node - learner_gpus_per_node,
        "ray_learner_gpus": learner_gpus_per_node,
        "ray_gpus_per_node": resources.gpus_per_node,
        "ray_object_store_bytes": object_store_mb * 1024 * 1024 if object_store_mb else None,
        "ray_join_timeout": join_timeout_s,
        "ray_worker_ports": worker_ports,
        "ray_noset_cuda_visible_devices": noset_cuda_visible_devices,
        "ray_include_dashboard": include_dashboard,
        "ray_head_args": list(head_args),
        "ray_worker_args": list(worker_args),
        "ray_temp_root": root,
    }


# --------------------------------------------------------------------------------------------
# Driver side


def connect(**init_kwargs: Any):
    """Connect to the job's Ray cluster (RAY_ADDRESS, set by templates/ray.sh.j2, with its token
    in RAY_AUTH_TOKEN), or start a local one elsewhere (tests, a laptop). Returns ray.init's context,
    or None when this process is connected already."""
    address = os.environ.get("RAY_ADDRESS")
    if not address and "RAY_AUTH_MODE" not in os.environ:
        # Local: a token of our own in this process's environment, so Ray writes none to
        # ~/.ray/auth_token. Ray reads the mode when imported, hence before the import (and a
        # refresh of its config in case it was imported already, as Ray's own set-up does).
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
        if "ray" in sys.modules:
            from ray._raylet import Config

            Config.initialize("")
    import ray

    if ray.is_initialized():
        return None
    if address:
        if os.environ.get("RAY_AUTH_MODE") == "token" and not os.environ.get("RAY_AUTH_TOKEN"):
            raise RuntimeError(
                "RAY_AUTH_MODE=token but RAY_AUTH_TOKEN is not set: run the driver inside the "
                "Ray template's job (templates/ray.sh.j2), which exports both"
            )
        init_kwargs.setdefault("logging_level", "WARNING")
        return ray.init(address=address, **init_kwargs)
    # Local: a short temp dir of our own (0700: Ray's sockets, not results), removed at exit.
    root = paths.ray_temp_root()
    root.mkdir(parents=True, exist_ok=True)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir=root)
    atexit.register(_remove_local_temp, temp_dir)
    init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("logging_level", "WARNING")
    return ray.init(_temp_dir=temp_dir, **init_kwargs)


def _remove_local_temp(temp_dir: str) -> None:
    import ray

    ray.shutdown()  # its processes first, or they recreate files as the tree goes
    shutil.rmtree(temp_dir, ignore_errors=True)


def node_names() -> dict[str, str]:
    """Alive Ray nodes: node id → SLURM node name (its `slurm_node:` resource; outside a Ray-template
    job, the node's address)."""
    import ray

    out = {}
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        names = [k[len(NODE_RESOURCE_PREFIX) :] for k in n.get("Resources", {}) if k.startswith(NODE_RESOURCE_PREFIX)]
        out[n["NodeID"]] = names[0] if names else n.get("NodeManagerAddress", n["NodeID"])
    return out


def spread(actor_cls, n: int, *args: Any, actor_options: dict | None = None, **kwargs: Any) -> list:
    """Start `n` actors of `actor_cls` (a class, or one already decorated with @ray.remote),
    round-robin over all alive nodes in SLURM node order, so every node gets one before any gets
    two. Each actor is pinned to its node (node affinity, soft: if that node cannot take it, Ray
    places it elsewhere rather than waiting). `actor_options` go to `.options()` (num_gpus, ...)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if n < 1:
        raise ValueError(f"spread needs n >= 1 actors, got {n}")
    remote_cls = actor_cls if isinstance(actor_cls, ray.actor.ActorClass) else ray.remote(actor_cls)
    names = node_names()
    order = sorted(names, key=lambda node_id: (names[node_id], node_id))
    actors = []
    for i in range(n):
        strategy = NodeAffinitySchedulingStrategy(node_id=order[i % len(order)], soft=True)
        actors.append(remote_cls.options(**(actor_options or {}), scheduling_strategy=strategy).remote(*args, **kwargs))
    return actors


def _actor_node_id(self) -> str:  # runs inside the actor (Actor.__ray_call__)
    import ray

    return ray.get_runtime_context().get_node_id()


def node_of(actor) -> str:
    """The SLURM node name an actor runs on (see `node_names`); waits until the actor is up."""
    import ray

    node_id = ray.get(actor.__ray_call__.remote(_actor_node_id))
    return node_names().get(node_id, node_id)


# --------------------------------------------------------------------------------------------
# Inside the job, called by templates/ray.sh.j2


def wait_for_nodes(address: str, expected: list[str], timeout_s: float, interval_s: float = 1.0) -> list[str]:
    """Poll until every SLURM node in `expected` has an alive Ray node; returns those missing
    when the timeout passes (empty: all joined)."""
    import ray

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:  # the head's GCS first: ray.init would retry an absent one for a long time
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                return list(expected)
            time.sleep(interval_s)
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        while True:
            missing = sorted(set(expected) - set(node_names().values()))
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(interval_s)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.kinds.train.ray_cluster", description="helpers for templates/ray.sh.j2"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ports", help="`ray start` port arguments of one Ray node, one per line")
    p.add_argument("job_id", type=int)
    p.add_argument("node_index", type=int)
    p.add_argument("n_nodes", type=int)
    p.add_argument("--worker-ports", type=int, default=DEFAULT_WORKER_PORTS)
    p.add_argument("--head", action="store_true", help="include the head-only ports (GCS, dashboard, client)")
    p.add_argument("--gcs-port-only", action="store_true", help="print the head's GCS port only (no check)")
    w = sub.add_parser("wait", help="wait until the Ray nodes of these SLURM nodes have joined")
    w.add_argument("--address", required=True)
    w.add_argument("--timeout", type=float, required=True)
    w.add_argument("nodes", nargs="+")
    a = parser.parse_args(argv)

    if a.command == "ports":
        try:
            ports, skipped = free_port_block(a.job_id, a.node_index, a.n_nodes, a.worker_ports)
        except UserError as e:
            print(e, file=sys.stderr)
            return 1
        if a.gcs_port_only:
            print(ports["port"])
            return 0
        if skipped:
            print(f"ray: ports {', '.join(skipped[:10])} in use on this host: block moved", file=sys.stderr)
        head_only = {"port", "dashboard-port", "ray-client-server-port"}
        for flag, port in ports.items():
            if a.head or flag not in head_only:
                print(f"--{flag}={port}")
        return 0
    start = time.monotonic()
    missing = wait_for_nodes(a.address, a.nodes, a.timeout)
    if missing:
        joined = [x for x in a.nodes if x not in missing]
        print(
            f"ray: {', '.join(missing)} did not join the Ray cluster at {a.address} within {a.timeout:g}s "
            f"(joined: {', '.join(joined) or 'none'}); see that node's `ray start` output in this job's log",
            file=sys.stderr,
        )
        return 1
    print(f"ray: {len(a.nodes)} node(s) joined ({', '.join(a.nodes)}) in {time.monotonic() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
