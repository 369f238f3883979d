"""The ray executor: one device label's rows measured on the Ray cluster's nodes carrying it.

A node joins as a device with `ray start --address HEAD:6379 --labels device=LABEL`. Each such
node gets one actor, placed by the node's id label and holding every CPU Ray gives the node, so
nothing Ray schedules (this compare's other rows, another compare) runs beside a timing; an
actor's calls run one at a time. The actor is the device agent (`toolkit.comparing.agent.Agent`)
without its pipe: each job runs in the agent's child process with its timeout and memory cap,
and its `Measurement` comes back as bytes, capped and read without pickle. Every file is put in
the object store once and pulled by a node the first time one of its rows needs it (sha256
checked). toolkit's modules travel as the job's `py_modules`; a node needs Ray, numpy and the
runtimes. Ray is imported only here, only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from toolkit import interrupts
from toolkit.comparing.data import EvalData
from toolkit.comparing.executors.base import OnResult, Outcome
from toolkit.comparing.executors.ssh import (
    MEASUREMENT_BASE_BYTES,
    MEASUREMENT_BYTES_PER_ITEM,
    checked_artifact,
    file_sha256,
)
from toolkit.comparing.measurement import Job, Measurement
from toolkit.errors import ExitCode, ToolkitError
from toolkit.results import FAILED, OK, UNSUPPORTED

LABEL = "device"  # the node label naming a device kind: `ray start --labels device=rpi5`
NODE_ID_LABEL = "ray.io/node-id"  # Ray gives every node this label
INSTALL = "pip install 'toolkit[cluster]'"
CONNECT_SECONDS = 10.0
WAIT_SECONDS = 0.1
CLOSE_SECONDS = 10.0
REASON_CHARS = 300
DEFAULT_PORTS = {"": 6379, "ray://": 10001}  # the GCS, Ray Client's server

# toolkit/, shipped as the job's py_modules (a path: `import toolkit` would import the CLI)
TOOLKIT_FOLDER = Path(__file__).resolve().parents[2]


def import_ray():
    """Ray, or a ToolkitError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ToolkitError(f"--cluster needs Ray: {INSTALL}", ExitCode.USAGE) from None
    return ray


def split_address(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `HOST[:PORT]` or `ray://HOST[:PORT]`; exit 2 for anything else."""
    scheme = "ray://" if address.startswith("ray://") else ""
    rest = address[len(scheme) :]
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    host = host.strip("[]")
    if not host or "/" in rest or not address.isprintable() or " " in address:
        raise ToolkitError(
            f"--cluster {address!r}: expected HOST:PORT or ray://HOST:PORT", ExitCode.USAGE
        )
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ToolkitError(f"--cluster {address!r}: not a port: {port!r}", ExitCode.USAGE)
    return scheme, host, int(port) if port else DEFAULT_PORTS[scheme]


def check_reachable(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """A TCP connection to the cluster's port first: Ray's own connect retries for minutes, and a
    refused or silent address must end the command within `seconds`."""
    _, host, port = split_address(address)
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ToolkitError(
            f"cannot reach the Ray cluster at {address}: {reason}", ExitCode.USAGE
        ) from None


class RayCluster:
    """This process's connection to one cluster, shared by the executors of its labels; it is
    closed when the last of them is done (unless the caller had connected Ray already)."""

    def __init__(self, address: str):
        self.address = address
        self.ray = import_ray()
        self.users = 0
        self.owned = False
        self.lock = threading.Lock()
        self.files: dict[str, tuple[str, object]] = {}  # name -> (sha256, ObjectRef)

    def connect(self) -> None:
        """ray.init on the address with toolkit's modules as the job's py_modules. Ray's own
        SIGTERM handler is put back to the one compare set, which stops the rows cleanly."""
        import signal

        if self.ray.is_initialized():
            return
        check_reachable(self.address)
        handler = signal.getsignal(signal.SIGTERM)
        runtime_env = {"py_modules": [str(TOOLKIT_FOLDER)], "excludes": ["__pycache__", "*.pyc"]}
        try:
            self.ray.init(
                address=self.address,
                runtime_env=runtime_env,
                logging_level="ERROR",
                log_to_driver=False,
            )
        except Exception as exc:  # Ray's errors name no common base; each is one reason here
            raise ToolkitError(
                f"cannot connect to the Ray cluster at {self.address}: {_first_line(exc)}",
                ExitCode.USAGE,
            ) from None
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, handler)
        self.owned = True

    def device_nodes(self) -> dict[str, list[dict]]:
        """The alive nodes of each device label."""
        nodes: dict[str, list[dict]] = {}
        for node in self.ray.nodes():
            label = (node.get("Labels") or {}).get(LABEL)
            if node.get("Alive") and isinstance(label, str):
                nodes.setdefault(label, []).append(node)
        return nodes

    def put_file(self, name: str, path: Path, sha256: str) -> object:
        """The file's ObjectRef, put in the object store once per compare."""
        with self.lock:
            if name not in self.files or self.files[name][0] != sha256:
                self.files[name] = sha256, self.ray.put(path.read_bytes())
            return self.files[name][1]

    def hold(self) -> None:
        with self.lock:
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            last = self.users == 0
        if last and self.owned:
            self.files.clear()
            self.ray.shutdown()
            self.owned = False


def cluster_executors(address: str, labels: Sequence[str]) -> list[RayExecutor]:
    """One executor per label, after connecting and checking that some node carries each label
    (exit 2 naming the labels the cluster has)."""
    cluster = RayCluster(address)
    cluster.connect()
    nodes = cluster.device_nodes()
    unknown = [label for label in labels if label not in nodes]
    if unknown or not labels:
        known = ", ".join(sorted(nodes)) or f"none (start nodes with --labels {LABEL}=NAME)"
        asked = f"no node of {address} has the label {LABEL}={unknown[0]}" if unknown else ""
        asked = asked or f"--cluster {address} needs --device LABEL"
        cluster.hold()
        cluster.release()
        raise ToolkitError(f"{asked}; the device labels it has: {known}", ExitCode.USAGE)
    return [RayExecutor(cluster, label, nodes[label]) for label in labels]


class RayExecutor:
    """The jobs of one device label, spread over the label's nodes, one at a time per node."""

    def __init__(self, cluster: RayCluster, label: str, nodes: list[dict]):
        self.cluster, self.label, self.nodes = cluster, label, nodes
        self.actors: dict[str, object] = {}  # node id -> its DeviceWorker actor
        self.descriptions: dict[str, object] = {}  # node id -> ObjectRef of its description
        self.dead: dict[str, str] = {}  # node id -> why its actor is gone
        self.described: dict[str, dict] = {}  # node id -> its description, once it came
        self.opened = False

    @property
    def name(self) -> str:
        return self.label

    @property
    def machine(self) -> dict:
        """The label's node (or nodes), for rows that have no Measurement; read after `close`,
        so it never calls Ray (whose calls would connect again)."""
        if len(self.nodes) == 1:
            node_id = self.nodes[0]["NodeID"]
            return self.described.get(node_id) or {"label": self.label, "node_id": node_id}
        return {"label": self.label, "node_ids": [node["NodeID"] for node in self.nodes]}

    def open(self) -> None:
        """Places one actor on each node of the label, each holding all of its node's CPUs."""
        if self.opened:
            return
        self.opened = True
        self.cluster.hold()
        worker = _worker_class(self.cluster.ray)
        for node in self.nodes:
            node_id = node["NodeID"]
            actor = worker.options(
                num_cpus=float(node.get("Resources", {}).get("CPU", 0)),
                label_selector={NODE_ID_LABEL: node_id},
                max_restarts=0,
                max_task_retries=0,
            ).remote(self.label)
            self.actors[node_id] = actor
            self.descriptions[node_id] = actor.describe.remote()

    def close(self) -> None:
        """Each actor removes its folder and ends; one that does not answer is killed."""
        if not self.opened:
            return
        ray = self.cluster.ray
        for node_id, ref in self.descriptions.items():
            with contextlib.suppress(Exception):
                if ray.wait([ref], timeout=0)[0]:
                    self.described[node_id] = _checked_description(ray.get(ref))
        alive = {node: actor for node, actor in self.actors.items() if node not in self.dead}
        refs = [actor.close.remote() for actor in alive.values()]
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=CLOSE_SECONDS)
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self.actors.clear()
        self.opened = False
        self.cluster.release()

    def abandon(self, pending: dict) -> None:
        """Ctrl-C: cancels what was submitted and kills the actors (a running timing does not
        stop otherwise); a node's next actor removes the folders left behind."""
        ray = self.cluster.ray
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)
        for node_id, actor in self.actors.items():
            self.dead.setdefault(node_id, "interrupted")
            with contextlib.suppress(Exception):
                ray.kill(actor)

    def run(
        self, jobs: Sequence[Job], out: Path, data: EvalData, on_result: OnResult
    ) -> list[Outcome]:
        self.open()
        outcomes: list[Outcome | None] = [None] * len(jobs)
        queue, pending = deque(range(len(jobs))), {}
        idle = list(self.actors)
        try:
            while queue or pending:
                interrupts.check()
                while queue and (idle or not self._alive()):
                    index = queue.popleft()
                    if not idle:  # every node of the label is gone
                        self._done(outcomes, on_result, index, (FAILED, self._gone_reason()))
                        continue
                    node_id = idle.pop()
                    pending[self._submit(node_id, jobs[index], out, data)] = index, node_id
                self._collect(pending, idle, outcomes, on_result, len(data))
        except KeyboardInterrupt:
            self.abandon(pending)
            raise
        finally:
            self.close()
        return outcomes

    def _collect(self, pending, idle, outcomes, on_result, items: int) -> None:
        """Waits a moment for any submitted row; each one done frees its node for the next."""
        if not pending:
            return
        ready, _ = self.cluster.ray.wait(list(pending), num_returns=1, timeout=WAIT_SECONDS)
        for ref in ready:
            index, node_id = pending.pop(ref)
            outcome = self._outcome(ref, node_id, items)
            if node_id not in self.dead:
                idle.append(node_id)
            self._done(outcomes, on_result, index, outcome)

    def _done(self, outcomes, on_result, index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        on_result(index, *outcome)

    def _alive(self) -> bool:
        return any(node_id not in self.dead for node_id in self.actors)

    def _gone_reason(self) -> str:
        return next(iter(self.dead.values()), f"no node with {LABEL}={self.label}")

    def _submit(self, node_id: str, job: Job, out: Path, data: EvalData) -> object:
        """The actor's measure call for `job`, with references to the files it needs."""
        try:
            path = checked_artifact(out, job)
        except ToolkitError as exc:
            return self.cluster.ray.put((FAILED, str(exc)))  # the row fails, nothing is sent
        files = {
            data.items_path.name: self._file(data.items_path),
            job.artifact: (job.sha256, self.cluster.put_file(job.artifact, path, job.sha256)),
        }
        spec = data.preprocessing
        request = {
            "job": job.to_json(),
            "data": {
                "items": data.items_path.name,
                "scale": float(spec.scale),
                "offset": float(spec.offset),
                "input_shape": list(data.input_shape),
            },
        }
        return self.actors[node_id].measure.remote(request, files)

    def _file(self, path: Path) -> tuple[str, object]:
        sha256 = file_sha256(path)
        return sha256, self.cluster.put_file(path.name, path, sha256)

    def _outcome(self, ref, node_id: str, items: int) -> Outcome:
        """(status, Measurement or reason) of one finished call; a dead node's reason is Ray's."""
        ray = self.cluster.ray
        try:
            reply = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self.dead[node_id] = f"node {node_id[:12]} ({self.label}): {_first_line(exc)}"
            return FAILED, self.dead[node_id]
        except ray.exceptions.RayError as exc:
            return FAILED, f"{self.label}: {_first_line(exc)}"
        return _read_reply(reply, node_id, self.label, items)


def _read_reply(reply: object, node_id: str, label: str, items: int) -> Outcome:
    """The outcome an actor sent back, trusted no more than a file: shape, status and size
    checked, the Measurement read by `from_bytes`."""
    if (
        isinstance(reply, tuple)
        and len(reply) == 2
        and reply[0] in (FAILED, UNSUPPORTED)
        and isinstance(reply[1], str)
    ):
        return reply[0], reply[1][:REASON_CHARS]
    if not (isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], dict)):
        return FAILED, f"{label}: the node sent something other than a measurement"
    header, payload = reply
    status = header.get("status")
    if status != OK or not isinstance(payload, bytes):
        reason = str(header.get("reason", "no reason given"))[:REASON_CHARS]
        return (UNSUPPORTED if status == UNSUPPORTED else FAILED), f"{label}: {reason}"
    cap = MEASUREMENT_BASE_BYTES + MEASUREMENT_BYTES_PER_ITEM * items
    try:
        measurement = Measurement.from_bytes(payload, cap)
    except ToolkitError as exc:
        return FAILED, f"{label}: {exc}"
    machine = {**measurement.machine, "label": label, "node_id": node_id}
    return OK, replace(measurement, machine=machine)


def _checked_description(description: object) -> dict:
    """A node's description as it said, kept only as plain values (a dict of them one deep)."""
    if not isinstance(description, dict):
        return {}
    plain, kept = (str, int, float, bool, type(None)), {}
    for key, value in list(description.items())[:50]:
        if isinstance(value, dict):
            value = {str(k)[:100]: str(v)[:100] for k, v in list(value.items())[:50]}
        elif isinstance(value, plain):
            value = value[:REASON_CHARS] if isinstance(value, str) else value
        else:
            continue
        kept[str(key)[:100]] = value
    return kept


def _first_line(exc: BaseException) -> str:
    """An exception's first non-empty line (Ray's carry tracebacks and advice below it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:REASON_CHARS]


@lru_cache(maxsize=1)
def _worker_class(ray):
    return ray.remote(DeviceWorker)


class DeviceWorker:
    """The actor on a device node: the agent's folder and its job runner, fed by Ray instead of
    a pipe. Imports stay as light as the agent's: it runs where only Ray, numpy and the
    runtimes are installed."""

    def __init__(self, label: str):
        import tempfile

        from toolkit.comparing.agent import (
            FOLDER_PREFIX,
            PID_NAME,
            Agent,
            _start_time,
            remove_stale,
        )
        from toolkit.comparing.frames import Channel

        self.label = label
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        (self.folder / PID_NAME).write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        remove_stale(self.folder.parent, self.folder)
        # The agent stops a job when its host's pipe closes; this pipe's writer stays open in this
        # process, so only Ray (by killing the actor, and with it the job) ends a job early.
        read_fd, self._write_fd = os.pipe()
        self.agent = Agent(self.folder, Channel(read_fd, self._write_fd))
        self.stored: dict[str, str] = {}

    def describe(self) -> dict:
        """This node: the machine, its Ray node id, address and label, every runtime's version."""
        import ray

        from toolkit.comparing.machine import describe_machine
        from toolkit.runners import RUNNERS

        context = ray.get_runtime_context()
        packages = tuple(runner.package for runner in RUNNERS.values())
        machine = describe_machine(packages)
        return {**machine, "label": self.label, "node_id": context.get_node_id()}

    def measure(self, request: dict, files: dict) -> tuple:
        """Stores the files this node lacks (pulled from the object store, sha256 checked), then
        runs the job as the agent does: ({status, reason}, the Measurement's bytes)."""
        import hashlib

        import ray

        from toolkit.comparing.agent import PLAIN_NAME

        for name, (sha256, ref) in files.items():
            if self.stored.get(name) == sha256:
                continue
            if not PLAIN_NAME.fullmatch(name):
                return {
                    "status": FAILED,
                    "reason": f"a file name toolkit does not send: {name}",
                }, b""
            data = ray.get(ref)
            if hashlib.sha256(data).hexdigest() != sha256:
                return {"status": FAILED, "reason": f"{name} arrived damaged (sha256)"}, b""
            (self.agent.files / name).write_bytes(data)
            self.stored[name] = sha256
        return self.agent.measure(request)

    def close(self) -> None:
        import shutil

        self.agent.stop_worker()
        shutil.rmtree(self.folder, ignore_errors=True)
