"""The one function that measures a row wherever it runs: load the runner, compute, time.

It imports numpy, the runtime's package and light toolkit modules only (errors, process,
runners), so the same code can run on a device with just Python, numpy and the runtime.
Timing lives here, not in the runners: each runner binds its input into the runtime's own
buffers and hands back the bare call, timed with perf_counter_ns after a warm-up.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit import process
from toolkit.comparing.data import EvalData
from toolkit.comparing.machine import describe_machine
from toolkit.comparing.measurement import Job, Measurement
from toolkit.errors import ExitCode, ToolkitError


def time_calls(
    call: Callable[[], object], runs: int, max_seconds: float, warmup: int
) -> np.ndarray:
    """Per-call wall time in ns: `runs` calls, or fewer when `max_seconds` runs out first."""
    for _ in range(warmup):
        call()
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(max_seconds * 1e9)
    count = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a microsecond call would land in the percentiles
    try:
        while count < runs:
            start = clock()
            call()
            end = clock()
            samples[count] = end - start
            count += 1
            if end > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples[:count]


@dataclass(frozen=True)
class Handoff:
    """How a worker shares the machine with the one before it: it is started once the previous
    worker has loaded its model, imports its runtime while that one computes outputs, then
    waits for `go` (the previous one is done). A worker times only after `may_time` (the next one
    has finished importing), so no import runs beside a load or a timing loop, and no two timing
    loops run at once."""

    ready: object  # multiprocessing.Event: set by this worker once its runtime is imported
    go: object  # set by the parent when the previous worker has finished
    loaded: object  # set by this worker once its model is loaded (load time measured)
    may_time: object  # set by the parent when the next worker is ready (or there is none)

    @classmethod
    def create(cls, context) -> Handoff:
        return cls(context.Event(), context.Event(), context.Event(), context.Event())


def runner_class(runtime: str) -> type:
    """The runner registered under `runtime`; ToolkitError for a name nobody registered."""
    from toolkit.runners import RUNNERS

    if runtime not in RUNNERS:
        raise ToolkitError(f"unknown runtime {runtime!r}", ExitCode.USAGE)
    return RUNNERS[runtime]


def measure_job(
    job: Job, artifact_path: Path, data: EvalData, handoff: Handoff | None = None
) -> Measurement:
    """Load time, outputs for every input, batch-1 latency and batch throughput of one artifact."""
    settings, runner_type = job.settings, runner_class(job.runtime)
    with process.quiet_stderr():
        # A worker's first import: keras's brings TensorFlow's objects, and every later
        # collection would scan them (import_tensorflow then finds TensorFlow imported).
        with process.without_matplotlib():
            process.import_frozen(runner_type.module)  # load time is the session, not imports
        machine = describe_machine((runner_type.package,))
        if handoff is not None:
            handoff.ready.set()
            handoff.go.wait()
        start = time.perf_counter_ns()
        runner = runner_type(artifact_path, settings.threads)
        load_ms = (time.perf_counter_ns() - start) / 1e6
    if handoff is not None:
        handoff.loaded.set()
    with runner:
        outputs = data.outputs(runner.predict)
        if handoff is not None:
            handoff.may_time.wait()
        latencies = time_calls(
            runner.bind(data.inputs(0, 1)), settings.runs, settings.max_seconds, settings.warmup
        )
        batch = data.inputs(0, settings.batch_size)
        batch_calls = time_calls(
            runner.bind(batch), max(5, settings.runs // 20), min(settings.max_seconds, 2.0), 3
        )
        extras = runner.extras()
    return Measurement(
        outputs=outputs,
        latencies_ns=latencies,
        throughput_ips=len(batch) * len(batch_calls) / (batch_calls.sum() / 1e9),
        load_ms=load_ms,
        peak_rss_mb=process.peak_rss_mb(),
        extras=extras,
        machine=machine,
    )
