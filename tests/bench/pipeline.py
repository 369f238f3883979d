"""Part 5: `toolkit export` and `toolkit compare` wall times; compare's rows as medians of reps."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

from tests.bench.runs import TOOLKIT, interleave, median, run_timed
from tests.bench.summary import Ratio


def export_and_compare(
    out: Path, threads: int, reps: int, logs: Path, alongside: dict[str, Callable[[int], object]]
) -> dict:
    """Export then compare, `reps` rounds, on the trained `out` (each export rewrites the same
    artifacts); keeps every compare's report.json for the per-artifact medians.

    `alongside` steps (the GEMM reference) run in the same turns, so drift hits them alike;
    their results come back under their own names.
    """

    def export(rep: int) -> float:
        return run_timed([TOOLKIT, "export", "--out", str(out)], logs / f"export-{rep}.log").seconds

    def compare(rep: int) -> dict:
        # The desktop artifacts in their own runtimes, one row each: the per-artifact medians and
        # the int8 pairs below key on the artifact. Part 6 times TFLite Micro and OpenVINO.
        native = ["--runtime", "keras", "--runtime", "tensorflow"]
        native += ["--runtime", "litert", "--runtime", "onnxruntime"]
        command = [TOOLKIT, "compare", "--out", str(out), "--threads", str(threads), *native]
        seconds = run_timed(command, logs / f"compare-{rep}.log").seconds
        return {"seconds": seconds, "report": json.loads((out / "report/report.json").read_text())}

    runs = interleave(reps, {"export": export, "compare": compare, **alongside})
    compare_seconds = [run["seconds"] for run in runs["compare"]]
    return {
        "export_seconds": runs["export"],
        "compare_seconds": compare_seconds,
        "median_export_seconds": median(runs["export"]),
        "median_compare_seconds": median(compare_seconds),
        "report": median_report([run["report"] for run in runs["compare"]]),
        **{name: runs[name] for name in alongside},
    }


def median_report(reports: list[dict]) -> dict:
    """The last report with each artifact's p50 and throughput replaced by the median over all."""
    merged = copy.deepcopy(reports[-1])
    for row in merged["rows"]:
        if row["status"] != "ok":
            continue
        same = [r for report in reports for r in report["rows"] if r["artifact"] == row["artifact"]]
        same = [r for r in same if r["status"] == "ok"]
        row["latency_ms"]["p50"] = median([r["latency_ms"]["p50"] for r in same])
        row["throughput_ips"] = median([r["throughput_ips"] for r in same])
        row["p50_ms_reps"] = [r["latency_ms"]["p50"] for r in same]
        row["throughput_ips_reps"] = [r["throughput_ips"] for r in same]
    return merged


def pipeline_ratios(result: dict) -> list[Ratio]:
    artifacts = len(result["report"]["rows"])
    return [
        Ratio(
            f"{step}_seconds",
            result[f"median_{step}_seconds"],
            "none set",
            None,
            f"wall time of the whole `toolkit {step}` process ({artifacts} artifacts)",
            " / ".join(f"{s:.1f}" for s in result[f"{step}_seconds"]) + " s",
        )
        for step in ("export", "compare")
    ]
