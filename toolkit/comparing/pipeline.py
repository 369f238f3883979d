"""compare's pipeline: plan the rows, let an executor measure their jobs, score the results."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from toolkit.comparing.data import EvalData
from toolkit.comparing.devices import LOCAL, measure_on_devices, parse_devices
from toolkit.comparing.estimates import estimated_rows
from toolkit.comparing.executors import Executor, LocalExecutor
from toolkit.comparing.judging import with_tolerances
from toolkit.comparing.measurement import MeasureSettings
from toolkit.comparing.plan import (
    REFERENCE,
    base_row,
    job_for,
    manifest_input_shape,
    manifest_preprocessing,
    row_plan,
)
from toolkit.comparing.scoring import build_report
from toolkit.errors import ExitCode, ToolkitError
from toolkit.results import UNSUPPORTED, Report, Row
from toolkit.store import Manifest


def measure_rows(
    out: Path,
    manifest: Manifest,
    items: np.ndarray,
    labels: np.ndarray | None,
    settings: MeasureSettings,
    runtimes: list[str] | None = None,
    on_row: Callable[[Row], None] = lambda row: None,
    executor: Executor | None = None,
    devices: Sequence[str] = (LOCAL,),
    ssh_config: Path | None = None,
    cluster: str | None = None,
) -> Report:
    """Measures every planned (artifact, runtime) pair, then compares each with the reference.

    `items` are the evaluation data as stored; the manifest says how they become inputs.
    `devices`: "local" (this machine, through `executor`) and `ssh://` devices; with a Ray
    `cluster` address, device labels of that cluster.
    """
    executors = parse_devices(devices, ssh_config, cluster)
    plan = row_plan(manifest, runtimes)
    if not plan or plan[0][0].name != REFERENCE:
        raise ToolkitError(
            f"{out / 'manifest.json'}: no {REFERENCE} reference listed", ExitCode.ARTIFACT
        )
    with tempfile.TemporaryDirectory(prefix="toolkit-eval-") as folder:
        data = EvalData.write(
            items,
            Path(folder),
            manifest_preprocessing(manifest),
            manifest_input_shape(manifest),
            manifest.inputs,
        )
        local = executor or LocalExecutor()
        results = measure_on_devices(
            out, plan, data, settings, on_row, executors, local, measure_plan
        )
    report = with_tolerances(
        build_report(out, manifest, results, labels, len(items), settings), manifest
    )
    return report.with_(rows=(*report.rows, *estimated_rows(manifest)))


def measure_plan(
    out: Path, plan, data: EvalData, settings: MeasureSettings, on_row, executor: Executor
) -> list[tuple[Row, object]]:
    """(row, Measurement or reason) for every planned pair, in plan order; a runtime the
    manifest already rules out gets no job. `on_row` hears of each row in plan order."""
    done: dict[int, tuple[str, object]] = {}
    jobs, where = [], []
    for k, (artifact, runner_class) in enumerate(plan):
        if reason := runner_class.known_unsupported(artifact):
            done[k] = UNSUPPORTED, reason
        else:
            jobs.append(job_for(artifact, runner_class, settings))
            where.append(k)
    reported = [0]

    def report_ready() -> None:
        while reported[0] in done:
            k = reported[0]
            on_row(base_row(*plan[k], done[k][0]))
            reported[0] += 1

    def on_result(j: int, status: str, result) -> None:
        done[where[j]] = status, result
        report_ready()

    report_ready()
    executor.run(jobs, out, data, on_result)
    return [(base_row(*plan[k], done[k][0]), done[k][1]) for k in range(len(plan))]
