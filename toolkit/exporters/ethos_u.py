"""Ethos-U NPU files: each validated int8 TFLite file compiled by Arm's Vela for an accelerator
configuration, with its C array and Vela's performance estimate.

Vela (`ethos-u-vela`) replaces the operators the NPU runs by one `ethos-u` custom operator
and leaves the others to the Cortex-M CPU (TFLM kernels). It runs in a child process, so a
crash in it costs one variant, never the export. Its figures are an estimate for the chosen
system configuration, not a measurement: nothing here runs on an NPU.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.exporters.base import ExportVariant, Tolerance
from toolkit.exporters.tflite_micro import c_array_variants, c_source, c_symbol, write_header

ACCELERATORS = (
    "ethos-u55-32",
    "ethos-u55-64",
    "ethos-u55-128",
    "ethos-u55-256",
    "ethos-u65-256",
    "ethos-u65-512",
    "ethos-u85-128",
    "ethos-u85-256",
    "ethos-u85-512",
    "ethos-u85-1024",
    "ethos-u85-2048",
)
DEFAULT_NPUS = ("ethos-u55-128", "ethos-u85-256")
# System and memory configuration of Vela's Arm/vela.ini per family: a microcontroller with
# weights in flash and the tensor arena in SRAM shared with the CPU (U55, U85); the U65 sits
# beside an application processor with its own SRAM.
SYSTEMS = {
    "ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65": ("Ethos_U65_High_End", "Dedicated_Sram"),
    "ethos-u85": ("Ethos_U85_SYS_Flash_High", "Shared_Sram"),
}
NPU_DIR = "npu"  # Vela's per-layer tables: npu/<source artifact>.<accelerator>.csv
VELA_SECONDS = 600
NPU_TYPES = {"INT8", "INT16"}  # tensor types the NPU computes on
_WARNING = re.compile(
    r"Warning \(supported operators\) operator: (\w+), ofm: '([^']*)'\nReason: ([^\n]*)"
    r"(?:\n(?!Warning)([^\n]+))?"
)
_OPERATORS = re.compile(r"^(CPU|NPU) operators = (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class VelaResult:
    """What one Vela run wrote and reported."""

    tflite: Path  # the compiled file
    per_layer: Path  # its per-layer CSV
    record: dict  # accelerator, system, memory mode, Vela version and the estimate


def system_of(accelerator: str) -> tuple[str, str]:
    """Vela's (system config, memory mode) for an accelerator such as ethos-u55-128."""
    if accelerator not in ACCELERATORS:
        raise ToolkitError(
            f"--npu {accelerator}: expected one of {', '.join(ACCELERATORS)}", ExitCode.USAGE
        )
    return SYSTEMS[accelerator.rsplit("-", 1)[0]]


def check_integer(tflite_path: Path) -> None:
    """Refuses a file with no integer tensor computed at run time: the NPU runs int8 and
    int16 operators only, so Vela would leave every operator of a float file to the CPU."""
    from toolkit.formats.tflite import graph_nodes

    nodes = graph_nodes(tflite_path)
    computed = {t["type"] for n in nodes for t in n["inputs"] + n["outputs"] if not t["constant"]}
    if not computed & NPU_TYPES:
        kinds = "/".join(sorted(computed)) or "no"
        raise ToolkitError(
            f"{tflite_path.name}: not an integer model ({kinds} tensors): the Ethos-U NPU runs "
            "int8/int16 operators only; compile the int8 file",
            ExitCode.CONVERSION,
        )


def vela_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ethos-u-vela")
    except PackageNotFoundError:
        raise ToolkitError(
            "Vela is not installed (pip install ethos-u-vela)", ExitCode.CONVERSION
        ) from None


def start_vela(tflite_path: Path, accelerator: str, folder: Path) -> subprocess.Popen:
    """Starts Vela on `tflite_path` for `accelerator` in a child process writing into `folder`
    (its output to files there, so several can run at once without filling a pipe)."""
    check_integer(tflite_path)
    system, memory = system_of(accelerator)
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", "import sys; from ethosu.vela.vela import main; "]
    command[-1] += "sys.exit(main())"
    command += [str(tflite_path), "--output-dir", str(folder), "--config", "Arm/vela.ini"]
    command += ["--accelerator-config", accelerator, "--system-config", system]
    command += ["--memory-mode", memory, "--verbose-performance", "--show-cpu-operations"]
    with (folder / "stdout.txt").open("w") as out, (folder / "stderr.txt").open("w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def finish_vela(process, tflite_path: Path, accelerator: str, folder: Path) -> VelaResult:
    """Waits for a started Vela and reads what it wrote: the compiled file and its estimate."""
    try:
        process.wait(timeout=VELA_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise ToolkitError(
            f"{tflite_path.name}: Vela did not finish in {VELA_SECONDS} s", ExitCode.CONVERSION
        ) from None
    system, memory = system_of(accelerator)
    stem, stderr = tflite_path.stem, (folder / "stderr.txt").read_text(errors="replace").strip()
    compiled, summary = folder / f"{stem}_vela.tflite", folder / f"{stem}_summary_{system}.csv"
    if process.returncode != 0 or not compiled.is_file() or not summary.is_file():
        reason = first_line(stderr.splitlines()[-1]) if stderr else ""
        raise ToolkitError(
            f"{tflite_path.name}: Vela refused it for {accelerator}: "
            f"{reason or f'exit code {process.returncode}'}",
            ExitCode.CONVERSION,
        )
    record = {
        "accelerator": accelerator,
        "system_config": system,
        "memory_mode": memory,
        "vela_version": vela_version(),
        "estimate": estimate(summary, (folder / "stdout.txt").read_text(errors="replace")),
    }
    return VelaResult(compiled, folder / f"{stem}_per-layer.csv", record)


def run_vela(tflite_path: Path, accelerator: str, folder: Path) -> VelaResult:
    """Compiles `tflite_path` for `accelerator` with Vela in a child process, into `folder`."""
    vela_version()
    return finish_vela(
        start_vela(tflite_path, accelerator, folder), tflite_path, accelerator, folder
    )


def run_vela_each(tflite_path: Path, accelerators, folder: Path) -> dict:
    """accelerator -> VelaResult, or the ToolkitError that left it out: one child process
    each, all running at once."""
    vela_version()
    check_integer(tflite_path)
    started = {a: start_vela(tflite_path, a, folder / a) for a in accelerators}
    results = {}
    for accelerator, process in started.items():
        try:
            results[accelerator] = finish_vela(
                process, tflite_path, accelerator, folder / accelerator
            )
        except ToolkitError as exc:
            results[accelerator] = exc
    return results


def estimate(summary: Path, stdout: str) -> dict:
    """Vela's figures: its summary CSV, the operator counts and the CPU fallbacks it printed."""
    with summary.open(newline="") as handle:
        row = next(csv.DictReader(handle))
    counts = {kind: int(count) for kind, count in _OPERATORS.findall(stdout)}
    fallbacks = [
        {"op": op, "tensor": tensor, "reason": " ".join(filter(None, (reason, detail)))}
        for op, tensor, reason, detail in _WARNING.findall(stdout)
    ]
    flash_kib = float(row["off_chip_flash_memory_used"]) + float(row["on_chip_flash_memory_used"])
    return {
        "label": "Vela's estimate, not a measurement",
        "clock_hz": float(row["core_clock"]),
        "inference_ms": 1000 * float(row["inference_time"]),
        "inferences_per_second": float(row["inferences_per_second"]),
        "cycles_total": int(float(row["cycles_total"])),
        "cycles_npu": int(float(row["cycles_npu"])),
        "macs": int(float(row["nn_macs"])),
        "sram_bytes": round(1024 * float(row["sram_memory_used"])),
        "dram_bytes": round(1024 * float(row["dram_memory_used"])),
        "flash_bytes": round(1024 * flash_kib),
        "npu_operators": counts.get("NPU", 0),
        "cpu_operators": counts.get("CPU", 0),
        "cpu_fallback": fallbacks,
    }


def export_vela(model, path: Path, context, source: str, accelerator: str, together=()) -> None:
    """`path` = the committed `source` file compiled for `accelerator`; its per-layer table
    goes to npu/ beside it and Vela's record to `context.facts` for the manifest. The first
    call compiles for every accelerator in `together` at once."""
    import shutil

    tflite_path = context.committed_file(source)
    results = context.shared(
        f"vela:{tflite_path.name}",
        lambda: run_vela_each(tflite_path, together or (accelerator,), context.build_dir / "vela"),
    )
    result = results.get(accelerator) or run_vela(
        tflite_path, accelerator, context.build_dir / "vela" / accelerator
    )
    if isinstance(result, ToolkitError):
        raise result
    shutil.copyfile(result.tflite, path)
    table = path.parent / NPU_DIR / f"{tflite_path.name}.{accelerator}.csv"
    table.parent.mkdir(exist_ok=True)
    if result.per_layer.is_file():
        shutil.copyfile(result.per_layer, table)
    per_layer = f"{NPU_DIR}/{table.name}"
    context.facts[path.name] = {
        "npu": {**result.record, "source": tflite_path.name, "per_layer": per_layer}
    }


def export_vela_source(model, path: Path, context, source: str) -> None:
    """The .cc of a compiled file: the same layout as the TFLite Micro arrays."""
    tflite_path = context.committed_file(source)
    symbol = c_symbol(context.c_name, tflite_path.name)
    path.write_text(c_source(tflite_path.read_bytes(), symbol, path.with_suffix(".h").name))


def export_vela_header(model, path: Path, context, source: str) -> None:
    """The .h of a compiled file. TFLM on this host has no Ethos-U driver to run it and
    measure its arena: the arena define is Vela's SRAM figure, rounded up to 16 bytes."""
    tflite_path = context.committed_file(source)
    npu = context.facts.get(tflite_path.name, {}).get("npu", {})
    sram = npu.get("estimate", {}).get("sram_bytes", 0)
    arena = -(-sram // 16) * 16
    write_header(path, tflite_path, c_symbol(context.c_name, tflite_path.name), arena)


def variants(accelerators=DEFAULT_NPUS, sources=("model_int8.tflite",)) -> tuple:
    """The compiled file and its C array per accelerator and integer source file."""
    made = []
    for source in sources:
        stem = Path(source).stem
        for accelerator in accelerators:
            system_of(accelerator)
            compiled = f"{stem}_vela_{accelerator}"
            kind = compiled.removeprefix("model_")
            made.append(
                ExportVariant(
                    "ethos-u",
                    kind,
                    f"{compiled}.tflite",
                    None,
                    ESTIMATE,
                    partial(
                        export_vela,
                        source=source,
                        accelerator=accelerator,
                        together=tuple(accelerators),
                    ),
                    source=source,
                )
            )
            writers = (export_vela_source, export_vela_header)
            made += c_array_variants("ethos-u", kind, f"{compiled}.tflite", ESTIMATE, writers)
    return tuple(made)


def carry_tables(staging: Path, out: Path) -> list[str]:
    """The npu/ folder to commit: this export's tables plus the earlier ones it did not
    rewrite (an export for other accelerators keeps theirs)."""
    import shutil

    staged, earlier = staging / NPU_DIR, out / NPU_DIR
    if not staged.is_dir():
        return []
    if earlier.is_dir() and not earlier.is_symlink():
        for table in earlier.iterdir():
            if table.is_file() and not table.is_symlink() and not (staged / table.name).exists():
                shutil.copyfile(table, staged / table.name)
    return [NPU_DIR]


# Nothing here runs the compiled file (no NPU): Vela checks what it compiles, and the file's
# numbers are those of the int8 file it was made from, validated before it.
ESTIMATE = Tolerance()
VARIANTS = variants()
