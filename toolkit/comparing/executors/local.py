"""The local executor: each job in a process of its own on this machine, paced against the others.

A crash, a hang or memory over the cap ends one process and becomes a failed row. Each worker is
forked from a server that imported what it needs before its runtime (numpy and toolkit's
modules; TensorFlow for the TensorFlow rows), so no row pays for a new interpreter and those
imports again. Workers start AHEAD at a time and import their runtimes together: the first ones
before anything loads, later ones while the current worker computes outputs, never while it
loads or times.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path

from toolkit import interrupts
from toolkit.comparing.data import EvalData
from toolkit.comparing.executors.base import OnResult, Outcome
from toolkit.comparing.measurement import Job, Measurement
from toolkit.comparing.worker import Handoff, measure_job
from toolkit.process import IsolatedRun, run_isolated
from toolkit.results import FAILED, OK, UNSUPPORTED
from toolkit.runners import RUNNERS
from toolkit.runners.base import attempt

AHEAD = 2  # workers started together, ahead of the one measuring


def measuring_worker(connection, job: Job, path: Path, data: EvalData, handoff=None) -> None:
    """Entry point of a measuring process: sends ("ok", the Measurement's bytes),
    ("unsupported", reason) or ("error", one line)."""

    def task() -> bytes:
        return measure_job(job, path, data, handoff).to_bytes()

    try:
        status, result = attempt(job.runtime, task)
        connection.send((status, result[0] if status == "error" else result))
    finally:
        connection.close()


def outcome(status: str, result) -> Outcome:
    """A worker's (status, payload) as an executor's outcome: the Measurement read back from
    its bytes; "error" becomes FAILED with its reason."""
    if status == OK:
        try:
            return OK, Measurement.from_bytes(result)
        except Exception as exc:  # noqa: BLE001 - a malformed measurement fails its row only
            return FAILED, str(exc)
    return (UNSUPPORTED if status == UNSUPPORTED else FAILED), str(result)


def measure_isolated(job: Job, path: Path, data: EvalData, worker=measuring_worker) -> tuple:
    """Runs one job in a process of its own: a crash, abort or hang becomes ("error", reason)."""
    settings = job.settings
    return run_isolated(worker, (job, path, data), settings.timeout_seconds, settings.max_memory_mb)


def preload(job: Job) -> tuple[str, ...]:
    """What the fork server of the job's runtime imports (none: a spawned interpreter, for a
    runtime a test registered)."""
    return RUNNERS[job.runtime].server_imports if job.runtime in RUNNERS else ()


class LocalExecutor:
    """Every job in its own process on this machine, paced (see the module's note)."""

    def __init__(self, worker=measuring_worker):
        self.worker = worker  # a test may wrap it (e.g. to register a runtime of its own)

    def run(
        self, jobs: Sequence[Job], out: Path, data: EvalData, on_result: OnResult
    ) -> list[Outcome]:
        return _PacedRun(self.worker, jobs, out, data).run(on_result)


class _PacedRun:
    """One executor run: the workers started so far, and the pacing between them."""

    def __init__(self, worker, jobs: Sequence[Job], out: Path, data: EvalData):
        self.worker, self.jobs, self.out, self.data = worker, list(jobs), out, data
        self.context = multiprocessing.get_context("spawn")
        self.started: dict[int, tuple[IsolatedRun, Handoff]] = {}

    def start(self, i: int) -> tuple[IsolatedRun, Handoff]:
        job, handoff = self.jobs[i], Handoff.create(self.context)
        args = (job, self.out / job.artifact, self.data, handoff)
        settings = job.settings
        run = IsolatedRun(
            self.worker, args, settings.timeout_seconds, settings.max_memory_mb, preload(job)
        )
        return run, handoff

    def start_after(self, i: int) -> None:
        for j in range(i + 1, min(i + 1 + AHEAD, len(self.jobs))):
            self.started[j] = self.start(j)

    def all_imported(self) -> bool:
        """Every started worker has imported its runtime (or died trying, which must not hold
        the others back)."""
        return all(h.ready.is_set() or not run.alive() for run, h in self.started.values())

    def pace(self, i: int, handoff: Handoff) -> bool:
        """Lets worker `i` load once no import runs beside it; once it has loaded, starts the
        next AHEAD workers if none is waiting; lets it time once they have imported. True while
        worker `i` still waits on it."""
        if not handoff.go.is_set():
            if not self.all_imported():
                return True
            handoff.go.set()
        if not self.started:
            if not handoff.loaded.is_set():
                return True
            self.start_after(i)
        if self.all_imported():
            handoff.may_time.set()
        return not handoff.may_time.is_set()

    def run(self, on_result: OnResult) -> list[Outcome]:
        outcomes = []
        try:
            for i in range(len(self.jobs)):
                interrupts.check()
                run, handoff = self.started.pop(i, None) or self.start(i)
                if i == 0:  # nothing loads or times yet: the next ones import beside it
                    self.start_after(i)
                status, result = outcome(*run.result(lambda i=i, h=handoff: self.pace(i, h)))
                outcomes.append((status, result))
                on_result(i, status, result)
        finally:
            for run, _ in self.started.values():
                run.stop()
        return outcomes
