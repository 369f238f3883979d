"""Runs every artifact in its own worker process and measures accuracy and speed the same way.

Timing lives here, not in the runners: each runner only binds its input into the runtime's own
buffers and hands back the bare call, which is timed with perf_counter_ns after a warm-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import platform
import resource
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit import interrupts
from toolkit.artifacts import JSON_MAX_BYTES, Artifact, Manifest, read_json
from toolkit.data import Preprocessing
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.metrics import (
    compare_outputs,
    flip_details,
    latency_percentiles,
    latency_quantiles,
    per_class_accuracy,
)
from toolkit.model import library_versions
from toolkit.process import start_child
from toolkit.results import FAILED, UNSUPPORTED, Report, Row
from toolkit.schema import check_fields

REFERENCE = "model.keras"
POLL_SECONDS = 0.1  # how often a waiting parent looks at interrupts and its worker's memory
# ...and while a worker waits on the parent to pace it (load, start the next, time): each wait
# on a 0.1 s poll cost compare ~0.05 s, three per row.
HANDOFF_POLL_SECONDS = 0.01
AHEAD = 2  # compare workers started together, ahead of the one measuring
PR_SET_PDEATHSIG = 1  # prctl(2): a signal the kernel sends when the parent dies


def default_max_memory_mb() -> int:
    """Half the machine's RAM: one worker runs at a time; the parent and the system need room."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 // (1 << 20)


@dataclass(frozen=True)
class MeasureConfig:
    """How hard to measure; the same for every artifact of one compare."""

    threads: int = 1
    runs: int = 1000
    max_seconds: float = 5.0
    batch_size: int = 256
    warmup: int = 50
    timeout_seconds: float = 300.0
    max_memory_mb: int = field(default_factory=default_max_memory_mb)


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
class EvalData:
    """The evaluation items as a worker reads them: memory-mapped from an .npy file in their
    stored dtype and preprocessed one batch at a time, so no process holds the float32 copy of
    the whole set and no pipe carries it."""

    items_path: Path
    preprocessing: Preprocessing
    input_shape: tuple[int, ...]

    @classmethod
    def write(cls, items: np.ndarray, folder: Path, preprocessing, input_shape) -> EvalData:
        path = folder / "items.npy"
        np.save(path, np.ascontiguousarray(items), allow_pickle=False)
        return cls(path, preprocessing, tuple(input_shape))

    def items(self) -> np.ndarray:
        return np.load(self.items_path, mmap_mode="r", allow_pickle=False)

    def __len__(self) -> int:
        return len(self.items())

    def inputs(self, start: int, stop: int) -> np.ndarray:
        """Model inputs for items[start:stop]."""
        batch = self.preprocessing.apply(self.items()[start:stop])
        return batch.reshape((-1, *self.input_shape))

    def outputs(self, predict: Callable[[np.ndarray], np.ndarray], batch: int = 1024) -> np.ndarray:
        """`predict` over every item, a batch at a time, outputs stacked as float32."""
        count = len(self)
        return np.concatenate(
            [predict(self.inputs(i, i + batch)).astype(np.float32) for i in range(0, count, batch)]
        )


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


def measure(
    runner_class, path: Path, data: EvalData, config: MeasureConfig, handoff: Handoff | None = None
) -> dict:
    """Load time, outputs for every input, batch-1 latency and batch throughput of one artifact."""
    from toolkit.process import import_frozen, quiet_stderr, without_matplotlib

    with quiet_stderr():
        # A worker's first import: keras's brings TensorFlow's objects, and every later
        # collection would scan them (import_tensorflow then finds TensorFlow imported).
        with without_matplotlib():
            import_frozen(runner_class.module)  # load time is the session, not imports
        if handoff is not None:
            handoff.ready.set()
            handoff.go.wait()
        start = time.perf_counter_ns()
        runner = runner_class(path, config.threads)
        load_ms = (time.perf_counter_ns() - start) / 1e6
    if handoff is not None:
        handoff.loaded.set()
    with runner:
        outputs = data.outputs(runner.predict)
        if handoff is not None:
            handoff.may_time.wait()
        latencies = time_calls(
            runner.bind(data.inputs(0, 1)), config.runs, config.max_seconds, config.warmup
        )
        batch = data.inputs(0, config.batch_size)
        batch_calls = time_calls(
            runner.bind(batch), max(5, config.runs // 20), min(config.max_seconds, 2.0), warmup=3
        )
        extras = runner.extras()
    return {
        "outputs": outputs,
        "latencies_ns": latencies,
        "throughput_ips": len(batch) * len(batch_calls) / (batch_calls.sum() / 1e9),
        "load_ms": load_ms,
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent at fork, so every
        # worker would report at least the parent's size.
        "peak_rss_mb": _rss_mb(os.getpid(), "VmHWM:")
        or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "extras": extras,
    }


def _outcome(runner_class, task: Callable[[], object]) -> tuple[str, object]:
    """("ok", result), ("unsupported", reason), or ("error", (one line, exit code)) for `task`."""
    from toolkit.runners.base import Unsupported

    try:
        return "ok", task()
    except Unsupported as exc:
        return UNSUPPORTED, str(exc)
    except ToolkitError as exc:
        return "error", (str(exc), int(exc.code))
    except Exception as exc:  # noqa: BLE001 - a runtime failing is a refusal, not a crash
        last = traceback.format_exception_only(exc)[-1].strip()
        return "error", (
            f"{type(exc).__name__} in {runner_class.runtime}: {last}",
            int(ExitCode.ARTIFACT),
        )


def _worker(connection, runner_class, path, data, config, handoff=None) -> None:
    """Entry point of a measuring process: sends ("ok", result), ("unsupported", reason) or
    ("error", one line)."""
    import toolkit  # noqa: F401 - sets the TF log level before any runtime loads

    def task():
        return measure(runner_class, path, data, config, handoff)

    try:
        status, result = _outcome(runner_class, task)
        connection.send((status, result[0] if status == "error" else result))
    finally:
        connection.close()


def _predict_worker(connection, runner_class, path, inputs, threads) -> None:
    """Entry point of a predicting process: sends ("ok", outputs) or ("error", (line, code))."""
    from toolkit.process import quiet_stderr

    def task():
        with quiet_stderr(), runner_class(path, threads) as runner:
            return runner.predict(inputs)

    try:
        connection.send(_outcome(runner_class, task))
    finally:
        connection.close()


def _die_with_parent(parent: int) -> None:
    """The kernel kills this process when its parent dies (kill -9 included), so a worker never
    runs on, unwatched, for up to its timeout; Linux only (elsewhere the parent's kill does)."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _isolated_entry(parent: int, target, *args) -> None:
    """What every worker does first: die with its parent, leave Ctrl-C to the parent (which stops
    it), and keep its scratch in a private temp folder removed when it ends."""
    from toolkit.scratch import private_tempdir

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with private_tempdir():
        target(*args)


def _rss_mb(pid: int, field: str = "VmRSS:") -> float:
    """Resident memory of a live process in MB, now (VmRSS) or at its peak (VmHWM); 0 when it
    is gone or /proc says nothing."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith(field)), 0)
    return int(kb) / 1024


class IsolatedRun:
    """`target(connection, *args)` in a spawned process: started now, waited for later, so the
    next worker can import while this one works. A crash, a hang or memory over
    `max_memory_mb` stops it and becomes ("error", reason)."""

    def __init__(self, target, args: tuple, timeout_seconds: float, max_memory_mb: float):
        context = multiprocessing.get_context("spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_isolated_entry, args=(os.getpid(), target, sender, *args), daemon=True
        )
        start_child(self._process)
        sender.close()
        self.timeout_seconds, self.max_memory_mb = timeout_seconds, max_memory_mb

    def result(self, on_poll: Callable[[], bool | None] = lambda: None) -> tuple:
        """What the worker sends; the wait checks for interrupts (Ctrl-C stops the worker at
        once) and calls `on_poll` every POLL_SECONDS, or every HANDOFF_POLL_SECONDS while it
        returns True (it is pacing the worker)."""
        deadline = time.monotonic() + self.timeout_seconds
        process, receiver = self._process, self._receiver
        try:
            pacing = on_poll()
            # poll() is also True once the worker died.
            while not receiver.poll(HANDOFF_POLL_SECONDS if pacing else POLL_SECONDS):
                interrupts.check()
                pacing = on_poll()
                if _rss_mb(process.pid) > self.max_memory_mb:
                    return (
                        "error",
                        f"stopped: used more than --max-memory {self.max_memory_mb:g} MB",
                    )
                if time.monotonic() > deadline:
                    return "error", f"timed out after {self.timeout_seconds:g} s"
            try:
                return receiver.recv()
            except EOFError:  # the worker died before sending anything
                process.join(5)
                return "error", _describe_exit(process.exitcode)
        finally:
            self.stop()

    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._receiver.close()


def run_isolated(target, args: tuple, timeout_seconds: float, max_memory_mb: float) -> tuple:
    """Runs `target(connection, *args)` in a spawned process and returns what it sends."""
    return IsolatedRun(target, args, timeout_seconds, max_memory_mb).result()


def measure_isolated(
    runner_class, path: Path, data: EvalData, config: MeasureConfig, worker=_worker
) -> tuple[str, dict | str]:
    """Runs `measure` in a spawned process: a crash, abort or hang becomes ("error", reason)."""
    args = (runner_class, path, data, config)
    return run_isolated(worker, args, config.timeout_seconds, config.max_memory_mb)


def predict_isolated(
    runner_class,
    path: Path,
    inputs: np.ndarray,
    threads: int = 1,
    timeout_seconds: float = 300.0,
    max_memory_mb: float | None = None,
) -> np.ndarray:
    """The runner's outputs for model-ready `inputs`, computed in a spawned process so a runtime
    that crashes or hangs on a hostile file is one line and exit 4, not a dead CLI."""
    memory = default_max_memory_mb() if max_memory_mb is None else max_memory_mb
    args = (runner_class, path, inputs, threads)
    status, result = run_isolated(_predict_worker, args, timeout_seconds, memory)
    if status == "ok":
        return result
    message, code = result if isinstance(result, tuple) else (result, ExitCode.ARTIFACT)
    if str(path) not in message:
        message = f"{path}: {message}"
    raise ToolkitError(message, ExitCode(code))


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker crashed ({signal.Signals(-code).name})"
    return f"worker exited with code {code} before reporting"


def environment(versions: dict[str, str]) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        # toolkit/__init__.py sets it to 0 unless the caller chose: it changes TF's CPU kernels.
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def manifest_preprocessing(manifest: Manifest) -> Preprocessing:
    """The preprocessing export recorded (manifests before numbers were recorded said "divide
    by 255" in words)."""
    scale = manifest.preprocessing.get("scale", 1 / 255)
    scale = 1 / 255 if isinstance(scale, str) else float(scale)
    return Preprocessing(scale, float(manifest.preprocessing.get("offset", 0.0)))


def manifest_input_shape(manifest: Manifest) -> tuple[int, ...]:
    return tuple(int(d) for d in manifest.preprocessing.get("input_shape", (28, 28)))


def row_plan(manifest: Manifest, runtimes: list[str] | None = None) -> list[tuple[Artifact, type]]:
    """Every (artifact, runner) pair to measure: each artifact in its own runtime, then in every
    other registered runtime that opens its file type; `runtimes` limits the runtimes.

    The reference always comes first: every other row is compared against its outputs.
    """
    from toolkit.runners import RUNNERS, runners_for

    plan = []
    for artifact in sorted(manifest.artifacts, key=lambda a: a.name != REFERENCE):
        if artifact.runtime is None:
            continue  # not runnable by itself (e.g. a C source for a microcontroller build)
        native = RUNNERS.get(artifact.runtime)
        others = [r for r in runners_for(artifact.path) if r is not native]
        for runner_class in [native, *others] if native else others:
            wanted = runtimes is None or runner_class.runtime in runtimes
            if wanted or artifact.name == REFERENCE:
                plan.append((artifact, runner_class))
    return plan


def _measured_row(
    base: Row, result: dict, reference: np.ndarray, labels: np.ndarray | None, classes: int
) -> Row:
    """The row's figures from a worker's result, judged by the one comparator."""
    outputs = result["outputs"]
    comparison = compare_outputs(outputs, reference, labels, class_scores=classes > 0)
    per_class = flips = None
    if labels is not None and classes:
        per_class = per_class_accuracy(outputs, labels, classes)
    if classes:
        flips = flip_details(outputs, reference, labels)
    return replace(
        base,
        **comparison.to_json(),
        **(flips or {}),
        per_class_accuracy=per_class,
        latency_ms=latency_percentiles(result["latencies_ns"]),
        latency_quantiles_ms=latency_quantiles(result["latencies_ns"]),
        latency_runs=len(result["latencies_ns"]),
        throughput_ips=float(result["throughput_ips"]),
        load_ms=float(result["load_ms"]),
        peak_rss_mb=float(result["peak_rss_mb"]),
        extras=result["extras"],
    )


def measure_rows(
    out: Path,
    manifest: Manifest,
    items: np.ndarray,
    labels: np.ndarray | None,
    config: MeasureConfig,
    runtimes: list[str] | None = None,
    on_row: Callable[[Row], None] = lambda row: None,
) -> Report:
    """Measures every planned (artifact, runtime) pair, then compares each with the reference.

    `items` are the evaluation data as stored; the manifest says how they become inputs.
    """
    plan = row_plan(manifest, runtimes)
    if not plan or plan[0][0].name != REFERENCE:
        raise ToolkitError(
            f"{out / 'manifest.json'}: no {REFERENCE} reference listed", ExitCode.ARTIFACT
        )
    with tempfile.TemporaryDirectory(prefix="toolkit-eval-") as folder:
        data = EvalData.write(
            items, Path(folder), manifest_preprocessing(manifest), manifest_input_shape(manifest)
        )
        results = _measure_plan(out, plan, data, config, on_row)
    return _report(out, manifest, results, labels, len(items), config)


def _skipped(planned) -> bool:
    artifact, runner_class = planned
    return runner_class.known_unsupported(artifact) is not None


def _measure_plan(out, plan, data: EvalData, config, on_row) -> list[tuple[Row, dict | str]]:
    """Every planned row, each in its own worker. Workers start AHEAD at a time and import
    their runtimes together: the first ones before anything loads, later ones while the
    current worker computes outputs, never while it loads or times. Starting a worker costs
    ~0.3 s (a new interpreter): two that start together cost that once."""
    context = multiprocessing.get_context("spawn")

    def start(artifact, runner_class) -> tuple[IsolatedRun, Handoff] | None:
        if runner_class.known_unsupported(artifact):
            return None
        handoff = Handoff.create(context)
        args = (runner_class, out / artifact.path, data, config, handoff)
        return IsolatedRun(_worker, args, config.timeout_seconds, config.max_memory_mb), handoff

    def start_after(i: int) -> None:
        for j in [j for j in range(i + 1, len(plan)) if not _skipped(plan[j])][:AHEAD]:
            started[j] = start(*plan[j])

    def all_imported() -> bool:
        """Every started worker has imported its runtime (or died trying, which must not hold
        the others back)."""
        return all(h.ready.is_set() or not run.alive() for run, h in started.values())

    results, started, first = [], {}, True
    try:
        for i, (artifact, runner_class) in enumerate(plan):
            interrupts.check()
            current = started.pop(i, None) or start(artifact, runner_class)
            if current is None:
                status, result = UNSUPPORTED, runner_class.known_unsupported(artifact)
            else:
                run, handoff = current
                if first:  # nothing loads or times yet: the next ones import beside it
                    start_after(i)
                    first = False

                def pace(handoff=handoff, i=i) -> bool:
                    """Lets this worker load once no import runs beside it; once it has loaded,
                    starts the next AHEAD workers if none is waiting; lets it time once they
                    have imported. True while this worker still waits on it."""
                    if not handoff.go.is_set():
                        if not all_imported():
                            return True
                        handoff.go.set()
                    if not started:
                        if not handoff.loaded.is_set():
                            return True
                        start_after(i)
                    if all_imported():
                        handoff.may_time.set()
                    return not handoff.may_time.is_set()

                status, result = run.result(on_poll=pace)
            base = Row(
                artifact.name,
                artifact.format,
                artifact.variant,
                runner_class.runtime,
                artifact.size_bytes,
                status=status if status != "error" else FAILED,
                compatibility=artifact.compatibility,
                quantization=artifact.quantization,
            )
            results.append((base, result))
            on_row(base)
    finally:
        for run, _ in started.values():
            run.stop()
    return results


def _report(
    out: Path, manifest: Manifest, results, labels, count: int, config: MeasureConfig
) -> Report:
    """Every row judged against the reference row (the first) by the one comparator."""
    reference_base, reference_result = results[0]
    if reference_base.ok and not np.isfinite(reference_result["outputs"]).all():
        reference_base, reference_result = (
            replace(reference_base, status=FAILED),
            "outputs contain NaN or infinity",
        )
    if not reference_base.ok:
        raise ToolkitError(
            f"{out / REFERENCE}: the reference failed: {reference_result}", ExitCode.ARTIFACT
        )
    reference = reference_result["outputs"]
    classes = len(manifest.class_names) if manifest.task == "classification" else 0
    rows, samples = [], {}
    for base, result in results:
        if not base.ok:
            rows.append(replace(base, error=result))
            continue
        try:
            row = _measured_row(base, result, reference, labels, classes)
        except ValueError as exc:
            row = replace(base, status=FAILED, error=str(exc))
        else:
            samples[row.key] = result["latencies_ns"] / 1e6
        rows.append(row)
    return Report(
        threads=config.threads,
        reference=REFERENCE,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        environment=environment(library_versions()),
        class_names=list(manifest.class_names),
        test_images=count,
        settings={
            "runs": config.runs,
            "max_seconds": config.max_seconds,
            "batch_size": config.batch_size,
            "warmup": config.warmup,
        },
        rows=tuple(rows),
        latency_samples=samples,
    )


def load_baseline(path: Path) -> Report:
    """An earlier report.json, checked field by field before anything is measured (exit 2)."""
    data = read_json(path, ExitCode.USAGE, "toolkit report.json", JSON_MAX_BYTES)
    try:
        check_fields(data, Report, skip=("rows", "latency_samples"), strict=False)
        if not isinstance(data["rows"], list):
            raise ValueError("field 'rows' is not a list")
        for row in data["rows"]:
            check_fields(row, Row, strict=False)
        baseline = Report.from_json(data)
        for row in baseline.rows:
            if row.ok:
                name, accuracy, p50 = row.artifact, row.accuracy, row.p50
                if not ((accuracy is None or 0 <= accuracy <= 1) and p50 is not None and p50 > 0):
                    raise ValueError(f"row {name!r} has accuracy {accuracy}, p50 {p50}")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ToolkitError(
            f"{path}: not a usable toolkit report.json ({type(exc).__name__}: {first_line(exc)})",
            ExitCode.USAGE,
        ) from None
    return baseline


def baseline_mismatches(report: Report, baseline: Report) -> list[str]:
    """Settings that differ between this run and the baseline (they move latency by themselves)."""
    environment_then = baseline.environment if isinstance(baseline.environment, dict) else {}
    settings_then = baseline.settings if isinstance(baseline.settings, dict) else {}
    pairs = {
        "threads": (report.threads, baseline.threads),
        "cpu": (report.environment.get("cpu"), environment_then.get("cpu")),
        "batch size": (report.settings.get("batch_size"), settings_then.get("batch_size")),
    }
    return [
        f"{name} {old!r} then, {new!r} now"
        for name, (new, old) in pairs.items()
        if old is not None and old != new
    ]


def apply_baseline(report: Report, baseline: Report, source: str) -> Report:
    """Adds the change in accuracy (points) and p50 latency (%) against an earlier report, row by
    row on (artifact, runtime), and which rows are new or gone; replaces any earlier deltas."""
    earlier = {row.key: row for row in baseline.rows if row.ok}
    now, then = {row.key for row in report.rows}, {row.key for row in baseline.rows}
    gone = [
        {"artifact": row.artifact, "runtime": row.runtime, "accuracy": row.accuracy, "p50": row.p50}
        for row in baseline.rows
        if row.key not in now
    ]
    new = [list(row.key) for row in report.rows if row.key not in then]
    rows = []
    for row in report.rows:
        before = earlier.get(row.key)
        if not row.ok or before is None:
            rows.append(replace(row, delta_accuracy_pts=None, delta_p50_pct=None))
            continue
        delta_accuracy = None
        if row.accuracy is not None and before.accuracy is not None:
            delta_accuracy = 100 * (row.accuracy - before.accuracy)
        rows.append(
            replace(
                row,
                delta_accuracy_pts=delta_accuracy,
                delta_p50_pct=100 * (row.p50 / before.p50 - 1),
            )
        )
    return report.with_(rows=tuple(rows), baseline=source, baseline_new=new, baseline_gone=gone)


def recommend(report: Report, within_pts: float = 0.5) -> Row | None:
    """The fastest (lowest p50) ok row whose accuracy is at most `within_pts` below the
    reference's (agreement stands in when there are no labels); None when none qualifies."""

    def quality(row: Row) -> float | None:
        return row.accuracy if row.accuracy is not None else row.agreement

    best = quality(report.reference_row)
    candidates = [
        row
        for row in report.rows
        if row.ok
        and row.p50 is not None
        and (best is None or quality(row) is not None)
        # 1e-9: accuracies are k/10000, so a drop of exactly `within_pts` must still count.
        and (best is None or (best - quality(row)) * 100 <= within_pts + 1e-9)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda row: (row.p50, row.artifact, row.runtime))


def gate_failures(
    report: Report, max_accuracy_drop: float | None, max_latency_regression: float | None
) -> list[str]:
    """One line per row that fails a gate; a row that could not run fails every gate (one a
    runtime does not support is not a failure)."""
    if max_accuracy_drop is None and max_latency_regression is None:
        return []
    reference = report.reference_row
    failures = []
    for row in report.rows:
        name = report.label(row)
        if row.status == UNSUPPORTED:
            continue
        if not row.ok:
            failures.append(f"{name}: could not be measured: {row.error}")
            continue
        if max_accuracy_drop is not None and row.accuracy is not None:
            drop = 100 * (reference.accuracy - row.accuracy)
            if drop > max_accuracy_drop:
                failures.append(
                    f"{name}: accuracy {100 * row.accuracy:.2f}% is {drop:.2f} pt below "
                    f"the reference (allowed: {max_accuracy_drop:g} pt)"
                )
        growth = row.delta_p50_pct
        if (
            max_latency_regression is not None
            and growth is not None
            and growth > max_latency_regression
        ):
            failures.append(
                f"{name}: p50 latency grew {growth:.1f}% over the baseline "
                f"(allowed: {max_latency_regression:g}%)"
            )
    return failures
