"""The host CPU as int8 results depend on it: its model and the instruction sets whose presence
changes how ONNX Runtime, OpenVINO and LiteRT compute int8 (without VNNI, u8s8 products can
saturate), from /proc/cpuinfo and the standard library only."""

from __future__ import annotations

import platform
from pathlib import Path

# x86: AVX2, AVX-512 and its VNNI, AVX-VNNI, AMX; Arm: dot product (asimddp) and int8 matmul.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def int8_host(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """{cpu, arch, instruction_sets}: the model name and which of INT8_FLAGS the CPU has (empty
    where /proc/cpuinfo cannot be read)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):  # x86 says flags, Arm features
            flags |= set(value.split())
    return {
        "cpu": model,
        "arch": platform.machine(),
        "instruction_sets": [flag for flag in INT8_FLAGS if flag in flags],
    }
