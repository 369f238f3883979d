"""Report rows for files nothing here can run, from the estimate their compiler made: an
Ethos-U file's row is named after its accelerator and holds Vela's figures, never a measured
latency or accuracy, and no recommendation or gate reads it."""

from __future__ import annotations

from toolkit.results import ESTIMATED, Row
from toolkit.store import Artifact, Manifest


def estimate_line(npu: dict) -> str:
    """One line a person reads in the table's list of rows that were not measured."""
    figures = npu.get("estimate", {})
    fallback = figures.get("cpu_fallback") or []
    on_cpu = ", ".join(sorted({f"{entry['op']} ({entry['reason']})" for entry in fallback}))
    return (
        f"Vela {npu.get('vela_version', '?')} estimate for {npu.get('system_config', '?')} at "
        f"{figures.get('clock_hz', 0) / 1e6:.0f} MHz, not measured (no NPU here): "
        f"{figures.get('inference_ms', float('nan')):.3g} ms per inference, "
        f"{figures.get('npu_operators', 0)} operators on the NPU, "
        f"{figures.get('cpu_operators', 0)} on the CPU" + (f": {on_cpu}" if on_cpu else "")
    )


def estimated_row(artifact: Artifact) -> Row:
    npu = artifact.npu
    figures = npu.get("estimate", {})
    return Row(
        artifact.name,
        artifact.format,
        artifact.variant,
        str(npu.get("accelerator", "npu")),
        artifact.size_bytes,
        status=ESTIMATED,
        error=estimate_line(npu),
        extras={"estimated_latency_ms": figures.get("inference_ms"), "vela": npu},
    )


def estimated_rows(manifest: Manifest) -> list[Row]:
    """One row per compiled NPU file in the manifest, in manifest order."""
    return [estimated_row(a) for a in manifest.artifacts if isinstance(a.npu, dict) and a.npu]
