"""TFLite Micro export: C arrays that compile and hold the .tflite bytes exactly."""

import re
import shutil
import subprocess
import types

import pytest

from toolkit.exporters.tflite_micro import VARIANTS, c_array_bytes, c_header, c_source

# Reads the generated array back through the C++ compiler: the bytes on stdout, and the exit
# code says whether the array is 16-byte aligned and the size constant matches.
CHECK_PROGRAM = """
#include <cstdint>
#include <cstdio>
#include "model_int8.h"
static_assert(MODEL_INT8_ARENA_BYTES > 0, "arena size defined");
int main() {
  fwrite(g_model_int8_model_data, 1, g_model_int8_model_data_size, stdout);
  return reinterpret_cast<uintptr_t>(g_model_int8_model_data) % 16 != 0;
}
"""


@pytest.fixture(scope="module")
def exported_c(tiny_model_dir, tmp_path_factory):
    """Every tflite-micro variant written with a stand-in for the export context."""
    tflite = {v: (tiny_model_dir / f"model_{v}.tflite").read_bytes() for v in ("int8", "float32")}
    context = types.SimpleNamespace(shared=lambda key, build: tflite[key.removeprefix("tflite:")])
    out = tmp_path_factory.mktemp("tflite_micro_export")
    for variant in VARIANTS:
        variant.write(None, out / variant.filename, context)
    return out


def test_variants_are_c_files_not_run_by_compare():
    assert {v.filename for v in VARIANTS} == {
        "model_int8.cc",
        "model_int8.h",
        "model_float32.cc",
        "model_float32.h",
    }
    assert {v.format for v in VARIANTS} == {"tflite-micro"}
    assert all(v.runtime is None for v in VARIANTS)


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_source_array_holds_the_tflite_bytes(exported_c, tiny_model_dir, variant):
    tflite = (tiny_model_dir / f"model_{variant}.tflite").read_bytes()
    source = (exported_c / f"model_{variant}.cc").read_text()
    assert f"alignas(16) const unsigned char g_model_{variant}_model_data[] = {{" in source
    assert c_array_bytes(source) == tflite


def test_header_defines_the_measured_arena(exported_c, tiny_model_dir):
    from toolkit.formats.tflite_micro import measure_arena_bytes

    header = (exported_c / "model_int8.h").read_text()
    arena = int(re.search(r"#define MODEL_INT8_ARENA_BYTES (\d+)", header).group(1))
    assert arena == measure_arena_bytes(tiny_model_dir / "model_int8.tflite")
    size = (tiny_model_dir / "model_int8.tflite").stat().st_size
    assert f"constexpr unsigned int g_model_int8_model_data_size = {size};" in header


def test_c_array_compiles_and_round_trips(exported_c, tiny_model_dir, tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (make setup installs Debian's g++)")
    (tmp_path / "check.cc").write_text(CHECK_PROGRAM)
    binary = tmp_path / "check"
    subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O0",
            f"-I{exported_c}",
            str(tmp_path / "check.cc"),
            str(exported_c / "model_int8.cc"),
            "-o",
            str(binary),
        ],
        check=True,
        capture_output=True,
    )
    done = subprocess.run([str(binary)], capture_output=True)
    assert done.returncode == 0, "array not 16-byte aligned"
    assert done.stdout == (tiny_model_dir / "model_int8.tflite").read_bytes()


def test_texts_are_pure_functions_of_bytes_symbol_and_arena():
    data = bytes(range(256)) * 3 + b"\x07"
    assert c_array_bytes(c_source(data, "tiny")) == data
    header = c_header(data, "tiny", 4096)
    assert "#define TINY_ARENA_BYTES 4096" in header
    assert "extern const unsigned char g_tiny_model_data[];" in header
    assert header.startswith("// tiny.tflite") and header.rstrip().endswith("#endif  // TINY_H_")
