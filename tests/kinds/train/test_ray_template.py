"""templates/ray.sh.j2 and its helpers, without SLURM: port layout, quoting, the local Ray path."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap

import pytest

from orchestrator.core.errors import UserError
from orchestrator.core.plan import Stage, Unit
from orchestrator.core.render import render_stage
from orchestrator.core.spec import Environment, Resources
from orchestrator.kinds.train import ray_cluster
from orchestrator.kinds.train.ray_cluster import PORT_BASE, PORT_LIMIT, port_block, ray_template_vars


def all_ports(block: dict[str, int]) -> set[int]:
    fixed = {p for flag, p in block.items() if not flag.endswith("worker-port")}
    workers = set(range(block["min-worker-port"], block["max-worker-port"] + 1))
    assert not fixed & workers, "a fixed port inside the worker range"
    return fixed | workers


def test_ports_of_nodes_and_of_nearby_jobs_never_overlap():
    seen: dict[int, tuple[int, int]] = {}
    for job in range(4_000_000, 4_000_080):  # 80 consecutive 2-node jobs, all on one host
        for node in range(2):
            for port in all_ports(port_block(job, node, 2)):
                assert PORT_BASE <= port < PORT_LIMIT
                assert port not in seen, f"job {job} node {node} and {seen[port]} share port {port}"
                seen[port] = (job, node)


def test_port_block_depends_on_the_job_id():
    a, b = port_block(1234, 0, 2), port_block(1235, 0, 2)
    assert not all_ports(a) & all_ports(b)
    assert port_block(1234, 0, 2) == a  # a pure function: each node computes the head's GCS port
    assert (
        port_block(7, 0, 1, worker_ports=10)["max-worker-port"]
        - port_block(7, 0, 1, worker_ports=10)["min-worker-port"]
        == 9
    )


def test_port_block_refuses_layouts_that_do_not_fit():
    with pytest.raises(ValueError, match="lower worker_ports"):
        port_block(1, 0, 500)
    with pytest.raises(ValueError):
        port_block(1, 2, 2)


def test_ports_command_prints_ray_start_flags_and_moves_past_busy_ports(capsys):
    assert ray_cluster.main(["ports", "--head", "99", "1", "2"]) == 0
    lines = capsys.readouterr().out.split()
    expected = port_block(99, 1, 2)
    assert f"--port={expected['port']}" in lines and f"--min-worker-port={expected['min-worker-port']}" in lines
    assert ray_cluster.main(["ports", "99", "1", "2"]) == 0
    worker_lines = capsys.readouterr().out.split()
    assert not any(x.startswith(("--port=", "--dashboard-port=", "--ray-client-server-port=")) for x in worker_lines)
    with socket.socket() as s:  # another Ray (or a daemon) listening on one of the block's ports
        s.bind(("127.0.0.1", expected["object-manager-port"]))
        s.listen()
        assert ray_cluster.main(["ports", "--head", "99", "1", "2"]) == 0
        out = capsys.readouterr()
        assert f"{expected['object-manager-port']}" in out.err and "block moved" in out.err
        moved = port_block(99, 1, 2, shift=1)
        assert f"--port={moved['port']}" in out.out.split()  # the next block, which is free
        assert ray_cluster.main(["ports", "--gcs-port-only", "99", "1", "2"]) == 0
        assert capsys.readouterr().out.split() == [str(moved["port"])]  # the head agrees with itself
        with pytest.MonkeyPatch.context() as mp:  # nothing free anywhere: a clear error, exit 1
            mp.setattr(ray_cluster, "check_free", lambda ports: [str(ports["port"])])
            assert ray_cluster.main(["ports", "99", "1", "2"]) == 1
            assert "no free port block" in capsys.readouterr().err


def ray_stage(tmp_vars: dict | None = None, env: Environment | None = None) -> Stage:
    r = Resources(nodes=2, tasks_per_node=1, cpus_per_task=3, gpus_per_node=1, time="10")
    return Stage(
        "driver",
        r,
        env or Environment(),
        (Unit("driver", "m:f"),),
        template="ray.sh.j2",
        template_vars=ray_template_vars(r, **(tmp_vars or {})),
    )


def test_render_quotes_every_value_and_is_valid_bash(orch_home, tmp_path):
    weird = "/opt/my env/$(touch pwned)/bin/python"
    stage = ray_stage(
        {
            "worker_args": ("--labels", "a=b; rm -rf /"),
            "head_args": ("--x=$HOME",),
            "noset_cuda_visible_devices": True,
            "object_store_mb": 100,
        },
        Environment(python=weird, vars={"NOTE": "it's `y`"}),
    )
    text = render_stage("exp", stage)
    assert shlex.quote(weird) + " -m ray.scripts.scripts start" in text
    assert "'a=b; rm -rf /'" in text and "'--x=$HOME'" in text
    assert "export RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1" in text
    assert "--num-cpus 3 --num-gpus 1" in text and f"--object-store-memory {100 * 1024 * 1024}" in text
    assert "$(touch pwned)" not in text.replace(shlex.quote(weird), "")
    script = tmp_path / "s.sh"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    # the token is made when the job runs: the script holds only the recipe
    assert [line for line in text.splitlines() if "RAY_AUTH_TOKEN=" in line] == [
        "RAY_AUTH_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n')"
    ]
    assert "set -x" not in text
    assert "\nray_n=${#ray_nodes[@]}  # nodes in the allocation\n" in text
    # the unit runs as all the job's tasks (task 0 on the head node drives Ray), after every node joined
    assert text.index("ray_cluster wait") < text.index("submitit.core._submit")
    assert "\nsrun --overlap --kill-on-bad-exit=1 --unbuffered --output" in text


@pytest.mark.parametrize("visible,expected", [("3,5,6", "5,6"), ("", "1,2")])
def test_learner_gpus_are_kept_from_ray(orch_home, tmp_path, visible, expected):
    """With one learner per node on a GPU, Ray gets the node's other GPUs: --num-gpus and CUDA_VISIBLE_DEVICES."""
    r = Resources(nodes=1, tasks_per_node=1, cpus_per_task=2, gpus_per_node=3, time="10")
    stage = Stage(
        "driver",
        r,
        Environment(),
        (Unit("driver", "m:f"),),
        template="ray.sh.j2",
        template_vars=ray_template_vars(r, learner_gpus_per_node=1),
    )
    text = render_stage("exp", stage)
    assert "--num-gpus 2" in text
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "local -a gpus")
    end = next(i for i, ln in enumerate(lines) if ln.strip() == "export CUDA_VISIBLE_DEVICES")
    script = tmp_path / "gpus.sh"
    script.write_text("f() {\n" + "\n".join(lines[start : end + 1]) + '\necho "$CUDA_VISIBLE_DEVICES"\n}\nf\n')
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if visible:
        env["CUDA_VISIBLE_DEVICES"] = visible
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
    assert "local -a gpus" not in render_stage("exp", ray_stage())  # no learner GPUs: Ray gets them all


def test_render_without_gpus_leaves_cuda_visible_devices_to_ray(orch_home):
    text = render_stage("exp", ray_stage())
    assert "NOSET_CUDA_VISIBLE_DEVICES" not in text
    assert "--object-store-memory" not in text


def test_template_vars_refuse_a_long_temp_root(orch_home):
    r = Resources(nodes=2)
    with pytest.raises(UserError, match="ORCH_RAY_TMP"):
        ray_template_vars(r, temp_root="/" + "x" * 60)
    with pytest.raises(UserError, match="join timeout"):
        ray_template_vars(r, join_timeout_s=0)


LOCAL = textwrap.dedent("""
    import json, os, pathlib
    from orchestrator.kinds.train.ray_cluster import connect, spread, node_of, node_names
    import ray  # imported before connect(), as a caller may have: the token mode must still apply
    assert connect(num_cpus=2, object_store_memory=80 * 1024 * 1024) is not None
    assert connect() is None  # connected already: a second call is harmless

    class Echo:
        def __init__(self, tag):
            self.tag = tag
        def get(self):
            return self.tag

    actors = spread(Echo, 3, "t", actor_options={"num_cpus": 0.5})
    print(json.dumps({"tags": ray.get([a.get.remote() for a in actors]), "nodes": [node_of(a) for a in actors],
                      "known": sorted(node_names().values()), "mode": os.environ["RAY_AUTH_MODE"]}))
""")


@pytest.mark.slow
def test_connect_and_spread_without_slurm_start_a_local_ray(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", LOCAL], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["tags"] == ["t", "t", "t"]
    assert len(got["known"]) == 1 and got["nodes"] == got["known"] * 3
    assert got["mode"] == "token"
    assert not (home / ".ray").exists()  # the local token stayed in the process's environment
