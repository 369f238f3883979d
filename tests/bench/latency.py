"""Part 2: the toolkit's batch-1 p50 of each .tflite against a bare invoke loop and LiteRT's tool.

The toolkit's figure comes from `toolkit.comparing.worker.measure_job`, the function compare runs;
the bare loop runs right after it in the same worker process, so the two differ only in the timing
harness.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.bench.runs import BenchError, interleave, median, run_timed
from tests.bench.summary import Ratio
from toolkit.comparing.data import EvalData
from toolkit.comparing.measurement import Job
from toolkit.comparing.measurement import MeasureSettings as MeasureConfig
from toolkit.comparing.worker import measure_job
from toolkit.metrics import latency_percentiles
from toolkit.process import run_isolated

PRINTED_MEDIAN = re.compile(r"Inference \(median\):\s+([0-9.]+) ms")
GOAL_BARE = 0.10  # toolkit p50 within 10% of the bare loop's
GOAL_TOOL = 1.0  # and never above the LiteRT tool's median


def bare_invoke_loop(invoke: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """Per-call ns of `invoke` with nothing else in the loop: the floor the harness is held to."""
    for _ in range(warmup):
        invoke()
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        start = clock()
        invoke()
        samples[i] = clock() - start
    return samples


def runner_bare_call(runner_class, path: Path, data: EvalData, threads: int):
    """The bare call a runner binds (LiteRT: `invoke()` on the input already set)."""
    runner = runner_class(path, threads)
    return runner.bind(data.inputs(0, 1))


def toolkit_and_bare_p50(
    runner_class, path: Path, data: EvalData, config: MeasureConfig, bare_call=runner_bare_call
) -> dict:
    """Both p50s in ms from one process: compare's measurement, then the bare loop of
    `bare_call(runner_class, path, data, threads)`."""
    from toolkit.process import quiet_stderr

    job = Job(Path(path).name, "", runner_class.runtime, config)
    toolkit_ns = measure_job(job, path, data).latencies_ns
    with quiet_stderr():
        call = bare_call(runner_class, path, data, config.threads)
    bare_ns = bare_invoke_loop(call, config.runs, config.warmup)
    return {
        "toolkit_p50_ms": latency_percentiles(toolkit_ns)["p50"],
        "bare_p50_ms": latency_percentiles(bare_ns)["p50"],
    }


def _worker(connection, runner_class, path, data, config, bare_call=runner_bare_call) -> None:
    """measure_isolated's worker contract: sends ("ok", result) or ("error", reason)."""
    from toolkit.runners import RUNNERS

    # measure_job builds the runner registered for the job's runtime: in this process, the
    # class given (part 6's KeptRuntime keeps the runtime object that runner built).
    RUNNERS[runner_class.runtime] = runner_class
    try:
        result = toolkit_and_bare_p50(runner_class, path, data, config, bare_call)
        connection.send(("ok", result))
    except Exception as exc:  # noqa: BLE001 - the caller turns it into a BenchError
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def tutorial_data(folder: Path, test_images: np.ndarray) -> EvalData:
    """Fashion-MNIST pixels as compare's workers read them."""
    from toolkit.data import TUTORIAL_PREPROCESSING

    return EvalData.write(test_images, folder, TUTORIAL_PREPROCESSING, (28, 28))


def timed_in_worker(runner_class, path: Path, data: EvalData, config, bare_call=runner_bare_call):
    """toolkit_and_bare_p50 in its own worker, as compare would run it."""
    args = (runner_class, path, data, config, bare_call)
    status, result = run_isolated(_worker, args, config.timeout_seconds, config.max_memory_mb)
    if status != "ok":
        raise BenchError(f"{path.name} in {runner_class.runtime}: timing failed: {result}")
    return result


def litert_tool_median(path: Path, config: MeasureConfig, log: Path) -> dict:
    """The tool's median in ms: as it prints it (0.01 ms steps) and at full precision."""
    with tempfile.TemporaryDirectory(prefix="bench-litert-") as scratch:
        result_json = Path(scratch) / "result.json"
        flags = [f"--model={path}", f"--num_threads={config.threads}"]
        flags += [f"--num_runs={config.runs}", f"--warmup_runs={config.warmup}"]
        command = [sys.executable, "-m", "tests.bench.litert_tool", *flags]
        run = run_timed([*command, f"--result_json={result_json}"], log)
        latency = json.loads(result_json.read_text())["latency"]
    printed = PRINTED_MEDIAN.search(run.stdout)
    return {
        "tool_median_ms": latency["median_ms"],
        "tool_printed_median_ms": float(printed.group(1)) if printed else None,
    }


def compare_litert_timings(
    out: Path, names: list[str], test_images: np.ndarray, config: MeasureConfig, reps: int, logs
) -> list[dict]:
    """Per .tflite: worker and tool in turn, `reps` rounds; medians of each p50 and both ratios."""
    from toolkit.runners import LiteRTRunner

    scratch = tempfile.TemporaryDirectory(prefix="bench-data-")
    data = tutorial_data(Path(scratch.name), test_images)
    rows = []
    for name in names:
        path = out / name
        runs = interleave(
            reps,
            {
                "worker": lambda rep, path=path: timed_in_worker(LiteRTRunner, path, data, config),
                "tool": lambda rep, path=path: litert_tool_median(
                    path, config, logs / f"litert-tool-{path.stem}-{rep}.log"
                ),
            },
        )
        merged = [{**w, **t} for w, t in zip(runs["worker"], runs["tool"], strict=True)]
        row = {"artifact": name, "reps": merged}
        for key in merged[0]:
            values = [rep[key] for rep in merged if rep[key] is not None]
            row[key] = median(values) if values else None
        row["bare_invoke_ratio"] = row["toolkit_p50_ms"] / row["bare_p50_ms"]
        row["litert_tool_ratio"] = row["toolkit_p50_ms"] / row["tool_median_ms"]
        rows.append(row)
    return rows


def printed_median(row: dict) -> str:
    """The tool's median as a reader of its output sees it."""
    value = row["tool_printed_median_ms"]
    return "no median line" if value is None else f"{value:.2f} ms"


def latency_ratios(rows: list[dict]) -> list[Ratio]:
    ratios = []
    for row in rows:
        ratios.append(
            Ratio(
                f"bare_invoke_ratio {row['artifact']}",
                row["bare_invoke_ratio"],
                f"within {100 * GOAL_BARE:g}% of 1",
                abs(row["bare_invoke_ratio"] - 1) <= GOAL_BARE,
                "toolkit batch-1 p50 / bare interpreter.invoke() loop p50, same process",
                f"{1000 * row['toolkit_p50_ms']:.2f} vs {1000 * row['bare_p50_ms']:.2f} µs",
            )
        )
        ratios.append(
            Ratio(
                f"litert_tool_ratio {row['artifact']}",
                row["litert_tool_ratio"],
                f"<= {GOAL_TOOL:g}",
                row["litert_tool_ratio"] <= GOAL_TOOL,
                "toolkit batch-1 p50 / median of LiteRT's benchmark_litert_model",
                f"{1000 * row['toolkit_p50_ms']:.2f} vs {1000 * row['tool_median_ms']:.2f} µs "
                f"(tool prints {printed_median(row)})",
            )
        )
    return ratios
