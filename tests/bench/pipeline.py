"""Part 5: `toolkit export` and `toolkit compare` wall times, today's against the previous
commit's in the same turns; compare's rows as medians of reps."""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.bench.previous import DESKTOP_FORMATS, PREVIOUS_COMMIT, side_folder, unpack_previous
from tests.bench.runs import ROOT, TOOLKIT, interleave, median, run_timed
from tests.bench.summary import Ratio

NATIVE_RUNTIMES = ["keras", "tensorflow", "litert", "onnxruntime"]


def export_and_compare(
    out: Path, threads: int, reps: int, logs: Path, alongside: dict[str, Callable[[int], object]]
) -> dict:
    """Export then compare, `reps` rounds, on the trained `out` (each export rewrites the same
    artifacts); keeps every compare's report.json for the per-artifact medians.

    `alongside` steps (the GEMM reference) run in the same turns, so drift hits them alike;
    their results come back under their own names. The previous commit's export and compare
    run in the same turns on a copy of the trained model, as does today's export of the same
    8 desktop artifacts: the ratios between them are the issues' export and compare goals.
    """
    current, previous = side_folder(out, "current"), side_folder(out, "previous")

    def export(rep: int) -> float:
        return run_timed([TOOLKIT, "export", "--out", str(out)], logs / f"export-{rep}.log").seconds

    def compare(rep: int) -> dict:
        # The desktop artifacts in their own runtimes, one row each: the per-artifact medians and
        # the int8 pairs below key on the artifact. Part 6 times TFLite Micro and OpenVINO.
        native = [option for runtime in NATIVE_RUNTIMES for option in ("--runtime", runtime)]
        command = [TOOLKIT, "compare", "--out", str(out), "--threads", str(threads), *native]
        seconds = run_timed(command, logs / f"compare-{rep}.log").seconds
        return {"seconds": seconds, "report": json.loads((out / "report/report.json").read_text())}

    def toolkit(code: Path, name: str, *arguments: str):
        """`python -m toolkit ...` run from `code`, so that it imports that copy of the package."""
        command = [sys.executable, "-m", "toolkit", *arguments]
        return lambda rep: run_timed(command, logs / f"{name}-{rep}.log", cwd=code).seconds

    formats = [option for name in DESKTOP_FORMATS for option in ("--format", name)]
    with tempfile.TemporaryDirectory(prefix="bench-previous-") as code:
        unpack_previous(Path(code))
        runs = interleave(
            reps,
            {
                "export": export,
                "export_desktop": toolkit(
                    ROOT, "export-desktop", "export", "--out", str(current), *formats
                ),
                "export_previous": toolkit(
                    Path(code), "export-previous", "export", "--out", str(previous)
                ),
                "compare": compare,
                "compare_previous": toolkit(
                    Path(code),
                    "compare-previous",
                    "compare",
                    "--out",
                    str(previous),
                    "--threads",
                    str(threads),
                ),
                **alongside,
            },
        )
    compare_seconds = [run["seconds"] for run in runs["compare"]]
    steps = {"compare": compare_seconds}
    steps |= {
        name: runs[name]
        for name in ("export", "export_desktop", "export_previous", "compare_previous")
    }
    return {
        **{f"{name}_seconds": seconds for name, seconds in steps.items()},
        **{f"median_{name}_seconds": median(seconds) for name, seconds in steps.items()},
        "previous_commit": PREVIOUS_COMMIT,
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
    previous = result["previous_commit"]

    def against_previous(name: str, today: str, before: str, goal: float) -> Ratio:
        value = result[f"median_{today}_seconds"] / result[f"median_{before}_seconds"]
        turns = zip(result[f"{today}_seconds"], result[f"{before}_seconds"], strict=True)
        return Ratio(
            f"{name}_vs_previous",
            value,
            f"≤ {goal}",
            value <= goal,
            f"whole-process `toolkit {name}` of the 8 desktop artifacts, today over {previous}",
            f"{result[f'median_{today}_seconds']:.2f} s vs {result[f'median_{before}_seconds']:.2f}"
            " s; turns " + " / ".join(f"{a:.1f}:{b:.1f}" for a, b in turns),
        )

    return [
        against_previous("export", "export_desktop", "export_previous", 0.6),
        against_previous("compare", "compare", "compare_previous", 0.7),
        *(
            Ratio(
                f"{step}_seconds",
                result[f"median_{step}_seconds"],
                "none set",
                None,
                f"wall time of the whole `toolkit {step}` process ({artifacts} artifacts)",
                " / ".join(f"{s:.1f}" for s in result[f"{step}_seconds"]) + " s",
            )
            for step in ("export", "compare")
        ),
    ]
