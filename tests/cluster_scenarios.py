"""Compare on a real local Ray cluster, run by tests/test_cluster_ray.py inside a network
namespace of its own (only 127.0.0.1 exists there, so no test traffic leaves loopback).

`python -m tests.cluster_scenarios FOLDER` exports a tiny classifier, starts a head labelled
device=sim-a and a second node labelled device=sim-b (one CPU each), runs each scenario against
them and writes what happened as JSON; the test module asserts on it. One cluster serves every
scenario: the node kill comes last. tests/conftest.py starts it when the session starts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABELS = ("sim-a", "sim-b")
QUICK = {"runs": 20, "max_seconds": 0.2, "batch_size": 8}
RUNTIMES = ["litert"]
SIGTERM_EXIT_SECONDS = 60  # a bound for the wait only; the test asserts on what it saw
SCENARIO_SECONDS = 300  # a bound on the whole background run
SHAPE, COUNT = (12, 12), 64  # the tiny classifier's input and items per split
CLIENT_PORT = 10001  # Ray Client's server on the head (free: the namespace is this run's alone)


def start_cluster(client_port: int | None = None):
    """A head and a second node on 127.0.0.1, each with one CPU and its device label; the head
    also serves Ray Client on `client_port` when given."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 1, "labels": {"device": LABELS[0]}, "node_ip_address": "127.0.0.1"}
    head |= {"ray_client_server_port": client_port} if client_port else {}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    second = cluster.add_node(num_cpus=1, labels={"device": LABELS[1]}, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    return cluster, second


def node_ids(cluster) -> dict[str, str]:
    """Each label's node id, as the cluster's nodes report them."""
    return {
        cluster.head_node.node_labels["device"]: cluster.head_node.node_id,
        **{node.node_labels["device"]: node.node_id for node in cluster.worker_nodes},
    }


def rows_of(report) -> list[dict]:
    return [
        {
            "artifact": row.artifact,
            "runtime": row.runtime,
            "status": row.status,
            "error": row.error,
            "device": row.device,
        }
        for row in report.rows
    ]


def _connected() -> bool:
    """Whether this process is still connected to Ray after a compare returned."""
    import ray

    return ray.is_initialized()


def compare(out: Path, address: str, devices, on_row=None, **options) -> dict:
    """toolkit.compare through the Python API: its rows, or its error and exit code."""
    import toolkit
    from toolkit.errors import ToolkitError

    start = time.perf_counter()
    try:
        report = toolkit.compare(
            out,
            cluster=address,
            devices=list(devices),
            on_row=on_row,
            **{"runtimes": RUNTIMES, "figures": False, **QUICK, **options},
        )
    except ToolkitError as exc:
        return {"error": str(exc), "code": int(exc.code), "seconds": time.perf_counter() - start}
    return {"rows": rows_of(report), "seconds": time.perf_counter() - start}


def interrupted(out: Path, address: str) -> dict:
    """The CLI stopped by SIGTERM once a row runs on the cluster: exit code, what the report
    folder holds after, and how long the stop took."""
    before = (out / "report" / "report.json").read_bytes()
    command = [sys.executable, "-m", "toolkit", "compare", "--out", str(out)]
    command += ["--cluster", address, "--device", LABELS[0], "--device", LABELS[1]]
    command += ["--runtime", "litert", "--runs", "10000000", "--max-seconds", "20", "--no-figures"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tmp = Path(os.environ["TMPDIR"])
    deadline = time.monotonic() + SIGTERM_EXIT_SECONDS
    while not list(tmp.glob("toolkit-agent-*/worker.log")) and time.monotonic() < deadline:
        time.sleep(0.05)  # a row's job runs on a node once its worker log exists
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=SIGTERM_EXIT_SECONDS)
    return {
        "code": process.returncode,
        "stop_seconds": time.perf_counter() - sent,
        "stderr": stderr.decode(errors="replace")[-2000:],
        "report_kept": (out / "report" / "report.json").read_bytes() == before,
    }


def free_cpus(address: str) -> dict:
    """The cluster's available CPUs seen by a fresh driver: every actor's hold released."""
    code = (
        "import json, sys, time, ray\n"
        "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
        "deadline = time.monotonic() + 20\n"
        "while ray.available_resources().get('CPU', 0) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "print(json.dumps(ray.available_resources().get('CPU', 0)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, address], capture_output=True, timeout=60)
    return {"cpus": json.loads(done.stdout or b"null")}


def killed(out: Path, address: str, second) -> dict:
    """sim-b's raylet killed once its first row is measured: the rows that follow."""
    from ray._private import ray_constants

    def on_row(row) -> None:
        if row.device.get("name") == LABELS[1] and not killed_at:
            killed_at.append(time.perf_counter())
            second.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.kill()

    killed_at: list[float] = []
    result = compare(out, address, LABELS, on_row=on_row)
    return {**result, "killed": bool(killed_at)}


def main(out: Path, results_path: Path) -> None:
    cluster, second = start_cluster(CLIENT_PORT)
    address = cluster.address
    results: dict = {"address": address, "nodes": node_ids(cluster)}
    try:
        results["two"] = compare(out, address, LABELS, runtimes=["litert", "onnxruntime"])
        results["connected_after"] = _connected()
        saved = out / "report" / "report.json"
        before = saved.read_bytes()
        results["unknown"] = compare(out, address, ["sim-x"])
        results["unknown"]["report_kept"] = saved.read_bytes() == before
        results["no_label"] = compare(out, address, ["local"])
        # From outside the cluster: Ray Client's ray:// address, then the GCS one again below.
        results["client"] = compare(out, f"ray://127.0.0.1:{CLIENT_PORT}", LABELS[:1])
        results["sigterm"] = interrupted(out, address)
        results["after_sigterm"] = free_cpus(address)
        results["killed"] = killed(out, address, second)
    finally:
        results_path.write_text(json.dumps(results, default=str))
        cluster.shutdown()
        shutil.rmtree(Path(os.environ["RAY_TMPDIR"]) / "ray", ignore_errors=True)


def namespaces_work() -> bool:
    """Network namespaces available: unshare and ip installed, and root."""
    return bool(shutil.which("unshare") and shutil.which("ip")) and (
        subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    )


def can_run() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None and namespaces_work()


def in_background(folder: Path) -> None:
    """Runs every scenario in a network namespace of its own, detached, writing into `folder`:
    exported/out (a tiny classifier exported for the cluster tests), results.json then `done`,
    and log.txt. Started when the session starts, it runs beside the other tests (it
    waits on Ray much of the time); tests/test_cluster_ray.py waits for `done`."""
    folder.mkdir(parents=True)
    # Ray's unix sockets live under RAY_TMPDIR: a path short enough for them (108 bytes).
    ray_tmp = tempfile.mkdtemp(prefix="tk-ray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "TMPDIR": str(folder)}
    script = f"{sys.executable} -m tests.cluster_scenarios {folder}"
    with open(folder / "log.txt", "wb") as log:
        subprocess.Popen(
            ["timeout", str(SCENARIO_SECONDS), "unshare", "-n", "--"]
            + ["sh", "-c", f"ip link set lo up && exec {script}"],
            cwd=Path(__file__).parent.parent,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not stopped with the worker that started it
        )


def run_all(folder: Path) -> None:
    """The background run (see in_background): the export, then every scenario."""
    from tests.models import export_tiny_classifier

    try:
        (folder / "model").mkdir()
        out = export_tiny_classifier(folder / "model", SHAPE, COUNT, 2)
        # A copy for the tests that compare on their own while the scenarios write reports.
        shutil.copytree(out, folder / "exported.building" / "out")
        (folder / "exported.building").rename(folder / "exported")
        main(out, folder / "results.json")
    finally:
        (folder / "done").touch()
        shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)


if __name__ == "__main__":
    run_all(Path(sys.argv[1]))
