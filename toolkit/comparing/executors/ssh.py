"""The ssh executor: every job on one device reached with OpenSSH, one at a time, by its agent.

The evaluation items go once, each artifact once (its sha256 checked on arrival), then one job
after another; each Measurement comes back as bytes, capped in size and read without pickle.
The device's folder, and any path it names, is never used on this machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toolkit.comparing.data import EvalData
from toolkit.comparing.executors.base import OnResult, Outcome
from toolkit.comparing.frames import ChannelClosed, ProtocolError
from toolkit.comparing.measurement import Job, Measurement
from toolkit.comparing.ssh import AgentSession, DeviceUnreachable, SshDevice, parse_device
from toolkit.errors import ToolkitError
from toolkit.fsio import check_artifact_file, sha256_stream
from toolkit.results import FAILED, OK, UNSUPPORTED

# A Measurement holds every item's outputs: its cap follows the data set's size.
MEASUREMENT_BASE_BYTES = 16 << 20
MEASUREMENT_BYTES_PER_ITEM = 64 << 10


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return sha256_stream(file)


def checked_artifact(out: Path, job: Job) -> Path:
    """The job's artifact file, checked before it leaves for a device; a folder stays home."""
    path = out / job.artifact
    if path.is_dir():
        raise ToolkitError(f"{job.artifact}: a folder artifact is measured on the host only")
    check_artifact_file(path)
    if file_sha256(path) != job.sha256:
        raise ToolkitError(f"{path}: changed since export (sha256 differs from the manifest)")
    if path.suffix == ".onnx":  # the device may lack the onnx package that checks this
        from toolkit.formats.onnx import check_external_data

        check_external_data(path)
    return path


class SshExecutor:
    """The jobs of one `ssh://` device; `open()` connects (compare opens every device before
    anything runs, so a refused host key stops the command first)."""

    def __init__(self, device: SshDevice | str, ssh_config: Path | None = None):
        self.device = parse_device(device) if isinstance(device, str) else device
        self.ssh_config = ssh_config
        self.session: AgentSession | None = None
        self.unreachable: str | None = None
        self.sent: set[str] = set()

    @property
    def name(self) -> str:
        return str(self.device)

    def open(self) -> None:
        """Connects and starts the agent; a device ssh cannot reach becomes the reason every
        row of it fails, a refused host key a ToolkitError (exit 2)."""
        if self.session is not None or self.unreachable is not None:
            return
        try:
            self.session = AgentSession(self.device, self.ssh_config)
        except DeviceUnreachable as exc:
            self.unreachable = str(exc)

    @property
    def machine(self) -> dict:
        """The device's description from its agent (empty when it was not reached)."""
        hello = self.session.hello if self.session is not None else {}
        machine = hello.get("machine")
        return machine if isinstance(machine, dict) else {}

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def run(
        self, jobs: Sequence[Job], out: Path, data: EvalData, on_result: OnResult
    ) -> list[Outcome]:
        self.open()
        outcomes: list[Outcome] = []
        try:
            for i, job in enumerate(jobs):
                status, result = self._outcome(job, out, data)
                outcomes.append((status, result))
                on_result(i, status, result)
        finally:
            self.close()
        return outcomes

    def _outcome(self, job: Job, out: Path, data: EvalData) -> Outcome:
        if self.unreachable is not None:
            return FAILED, self.unreachable
        missing = self.session.missing_package(job.runtime)
        if missing is not None:
            return UNSUPPORTED, (
                f"{missing} is not installed for {self.session.python} on {self.name} "
                f"(pip install {missing} there)"
            )
        try:
            self._send(job, out, data)
            return self._measure(job, data)
        except ToolkitError as exc:
            if isinstance(exc, DeviceUnreachable):
                self.unreachable = str(exc)
            return FAILED, str(exc)
        except (ChannelClosed, ProtocolError) as exc:
            self.unreachable = str(self.session.failure(exc))
            return FAILED, self.unreachable

    def _send(self, job: Job, out: Path, data: EvalData) -> None:
        """The items and the job's artifact, each once per device; a folder stays home."""
        if "items.npy" not in self.sent:
            self.session.put("items.npy", data.items_path, file_sha256(data.items_path))
            self.sent.add("items.npy")
        if job.artifact in self.sent:
            return
        path = checked_artifact(out, job)
        self.session.put(job.artifact, path, job.sha256)
        self.sent.add(job.artifact)

    def _measure(self, job: Job, data: EvalData) -> Outcome:
        preprocessing = data.preprocessing
        request = {
            "job": job.to_json(),
            "data": {
                "items": "items.npy",
                "scale": float(preprocessing.scale),
                "offset": float(preprocessing.offset),
                "input_shape": list(data.input_shape),
            },
        }
        cap = MEASUREMENT_BASE_BYTES + MEASUREMENT_BYTES_PER_ITEM * len(data)
        reply, payload = self.session.measure(request, job.settings.timeout_seconds, cap)
        status = reply.get("status")
        if status == OK:
            return OK, Measurement.from_bytes(payload, cap)
        reason = str(reply.get("reason", "no reason given"))[:500]
        return (UNSUPPORTED if status == UNSUPPORTED else FAILED), f"{self.name}: {reason}"
