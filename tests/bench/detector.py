"""An SSD-lite detector (MobileNetV2 alpha 0.35 backbone at 96x96x3, a box head and a class-score
head, issue 25) through the CLI as a user runs it: export and compare seconds, and LiteRT's p50
for its float32 and int8 files. `python -m tests.bench.detector --out DIR` runs it alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tests.bench.any_model import export_and_compare


def detector_figures(folder: Path, items: int = 256) -> dict:
    from tests import multi_io_models

    model_path, data_path = multi_io_models.build_detector(
        folder, "mobilenet_v2", side=96, count=items
    )
    out = folder / "out"
    cli = export_and_compare(out, ("--model", model_path, "--data", data_path), ("--runs", "200"))
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "report" / "report.json").read_text())
    litert = {
        row["artifact"]: row["latency_ms"]["p50"]
        for row in report["rows"]
        if row["runtime"] == "litert" and row["status"] == "ok"
        and row["variant"] in ("float32", "int8", "mixed_int8")
    }  # fmt: skip
    return {
        "items": items,
        **cli,
        "artifacts": len(manifest["artifacts"]),
        "left_out": [entry["artifact"] for entry in manifest["left_out"]],
        "outputs": [{k: o[k] for k in ("name", "shape", "kind")} for o in manifest["outputs"]],
        "litert_p50_ms": litert,
        "rows_ok": sum(row["status"] == "ok" for row in report["rows"]),
        "rows": len(report["rows"]),
    }


def main(out: Annotated[Path, typer.Option(help="Folder for the detector's files")]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(detector_figures(out), indent=2))


if __name__ == "__main__":
    typer.run(main)
