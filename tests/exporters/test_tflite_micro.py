"""TFLite Micro export: C arrays that compile, hold the validated .tflite bytes exactly, carry
the op resolver of exactly the model's operators, and link beside another model's."""

import re
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from toolkit.exporters.tflite_micro import VARIANTS, c_array_bytes, c_header, c_source
from toolkit.exporters.tflm_resolver import BUILTIN_METHODS, CUSTOM_METHODS, TFLM_COMMIT

TFLM_HEADER = Path(__file__).parents[1] / "data" / "tflm" / "micro_mutable_op_resolver.h"

# Reads the generated array back through the C++ compiler: the bytes on stdout, and the exit
# code says whether the array is 16-byte aligned and the size constant matches.
CHECK_PROGRAM = """
#include <cstdint>
#include <cstdio>
#include "model_int8.h"
static_assert(MODEL_INT8_ARENA_BYTES > 0, "arena size defined");
int main() {
  auto resolver = model_int8_op_resolver();
  if (resolver.added != model_int8_operator_count) return 2;
  fwrite(g_model_int8_model_data, 1, g_model_int8_model_data_size, stdout);
  return reinterpret_cast<uintptr_t>(g_model_int8_model_data) % 16 != 0;
}
"""


def compiler() -> str:
    found = shutil.which("g++") or shutil.which("c++")
    if found is None:
        pytest.skip("no C++ compiler (make setup installs Debian's g++)")
    return found


def header_methods() -> dict[str, str]:
    """Add* method -> the BuiltinOperator it registers, read from TFLM's pinned header."""
    text = TFLM_HEADER.read_text()
    methods = {}
    for name, body in re.findall(r"TfLiteStatus (Add\w+)\((.*?)\n  \}", text, re.DOTALL):
        ops = re.findall(r"AddBuiltin\(BuiltinOperator_(\w+)", body)
        methods[name] = ops[0] if len(ops) == 1 else None
    return methods


def stand_in_resolver(folder: Path) -> Path:
    """tensorflow/lite/micro/micro_mutable_op_resolver.h for the compiler: a class with TFLM's
    template signature and exactly the pinned header's Add* methods, each counting its call
    and refusing more than N operators, as TFLM's does."""
    methods = "\n".join(
        f"  int {name}() {{ return ++added > N; }}" for name in sorted(header_methods())
    )
    path = folder / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    path.parent.mkdir(parents=True)
    path.write_text(
        "#pragma once\nnamespace tflite {\ntemplate <unsigned int N>\n"
        "class MicroMutableOpResolver {\n public:\n  unsigned int added = 0;\n"
        f"{methods}\n}};\n}}\n"
    )
    return folder


def committed_context(folder: Path, c_name: str = "model"):
    """A stand-in for the export context: the validated .tflite files in `folder`."""
    return types.SimpleNamespace(committed_file=lambda name: folder / name, c_name=c_name)


@pytest.fixture(scope="module")
def exported_c(tiny_model_dir, tmp_path_factory):
    """Every tflite-micro variant written from the tiny model's files."""
    out = tmp_path_factory.mktemp("tflite_micro_export")
    for variant in VARIANTS:
        variant.write(None, out / variant.filename, committed_context(tiny_model_dir))
    return out


def test_variants_are_c_files_made_from_validated_tflite():
    assert {(v.filename, v.source) for v in VARIANTS} == {
        ("model_int8.cc", "model_int8.tflite"),
        ("model_int8.h", "model_int8.tflite"),
        ("model_float32.cc", "model_float32.tflite"),
        ("model_float32.h", "model_float32.tflite"),
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


def test_resolver_table_is_the_pinned_tflm_header():
    """Each op's method registers that very op in TFLM's header (read, not guessed)."""
    assert TFLM_COMMIT in (TFLM_HEADER.parent / "SOURCE").read_text()
    declared = header_methods()
    assert {op: name for name, op in declared.items() if op} == BUILTIN_METHODS
    assert set(CUSTOM_METHODS.values()) <= set(declared)


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_header_registers_exactly_the_model_operators(exported_c, tiny_model_dir, variant):
    from toolkit.formats.tflite import graph_nodes

    header = (exported_c / f"model_{variant}.h").read_text()
    called = re.findall(r"^  resolver\.(Add\w+)\(\);$", header, re.MULTILINE)
    ops = {node["op"] for node in graph_nodes(tiny_model_dir / f"model_{variant}.tflite")}
    declared = header_methods()
    assert sorted(declared[method] for method in called) == sorted(ops)
    count = len(called)
    assert f"inline tflite::MicroMutableOpResolver<{count}> model_{variant}_op_resolver() {{" in (
        header
    )
    assert f"constexpr unsigned int model_{variant}_operator_count = {count};" in header


def test_c_array_compiles_and_round_trips(exported_c, tiny_model_dir, tmp_path):
    stand_in = stand_in_resolver(tmp_path / "tflm")
    (tmp_path / "check.cc").write_text(CHECK_PROGRAM)
    binary = tmp_path / "check"
    command = [compiler(), "-std=c++17", "-O0", f"-I{exported_c}", f"-I{stand_in}"]
    command += [str(tmp_path / "check.cc"), str(exported_c / "model_int8.cc"), "-o", str(binary)]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    done = subprocess.run([str(binary)], capture_output=True)
    assert done.returncode == 0, "array not 16-byte aligned or resolver size wrong"
    assert done.stdout == (tiny_model_dir / "model_int8.tflite").read_bytes()


TWO_MODELS = """
#include <cstdio>
#include "kws/model_int8.h"
#include "vww/model_int8.h"
int main() {
  auto kws = kws_int8_op_resolver();
  auto vww = vww_int8_op_resolver();
  fwrite(g_kws_int8_model_data, 1, g_kws_int8_model_data_size, stdout);
  fwrite(g_vww_int8_model_data, 1, g_vww_int8_model_data_size, stdout);
  if (kws.added != kws_int8_operator_count || vww.added != vww_int8_operator_count) return 2;
  return KWS_INT8_ARENA_BYTES <= 0 || VWW_INT8_ARENA_BYTES <= 0;
}
"""


def test_two_models_link_into_one_firmware(tiny_model_dir, tmp_path):
    """Symbols named after each model (`--c-name`): both arrays, headers and resolvers in one
    program, each array still its own model's bytes."""
    int8 = next(v for v in VARIANTS if v.filename == "model_int8.cc")
    header = next(v for v in VARIANTS if v.filename == "model_int8.h")
    for name in ("kws", "vww"):
        (tmp_path / name).mkdir()
        for variant in (int8, header):
            context = committed_context(tiny_model_dir, c_name=name)
            variant.write(None, tmp_path / name / variant.filename, context)
    stand_in = stand_in_resolver(tmp_path / "tflm")
    (tmp_path / "main.cc").write_text(TWO_MODELS)
    binary = tmp_path / "firmware"
    command = [compiler(), "-std=c++17", "-O0", f"-I{tmp_path}", f"-I{stand_in}"]
    command += [str(tmp_path / "main.cc"), str(tmp_path / "kws" / "model_int8.cc")]
    command += [str(tmp_path / "vww" / "model_int8.cc"), "-o", str(binary)]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    done = subprocess.run([str(binary)], capture_output=True)
    assert done.returncode == 0
    assert done.stdout == (tiny_model_dir / "model_int8.tflite").read_bytes() * 2


def test_texts_are_pure_functions_of_bytes_symbol_and_arena():
    data = bytes(range(256)) * 3 + b"\x07"
    assert c_array_bytes(c_source(data, "tiny")) == data
    header = c_header(data, "tiny", 4096)
    assert "#define TINY_ARENA_BYTES 4096" in header
    assert "extern const unsigned char g_tiny_model_data[];" in header
    assert header.startswith("// tiny.tflite") and header.rstrip().endswith("#endif  // TINY_H_")


def test_c_identifiers_from_any_model_name():
    from toolkit.exporters.tflite_micro import c_identifier, c_symbol

    assert c_symbol("model", "model_int8.tflite") == "model_int8"  # the tutorial's names
    assert c_symbol("kws", "model_mixed_int8.tflite") == "kws_mixed_int8"
    assert c_identifier("9 lives-v2") == "m_9_lives_v2"
    assert c_identifier("$$") == "model"


def test_c_array_of_a_replaced_int8_holds_the_mixed_file(tmp_path):
    """When full int8 misses its tolerance and a mixed model replaces it, the C array is made
    from the mixed file that was validated and committed, named after it; the failed bytes
    are nowhere (issue 26). The Ethos-U file is compiled from the same mixed file (one export
    serves both: each costs seconds)."""
    import numpy as np

    from tests.test_quantization import build_outlier_model, synthetic_images
    from toolkit.exporting.pipeline import export_artifacts
    from toolkit.options import ExportOptions

    build_outlier_model("weights").save(tmp_path / "kws.keras")
    x_test, y_test = synthetic_images(np.random.default_rng(6), 300)
    np.savez(tmp_path / "data.npz", x_test=x_test, y_test=y_test)
    out = tmp_path / "out"
    out.mkdir()
    for stale in ("model_int8.tflite", "model_int8.cc", "model_int8.h"):  # an earlier export's
        (out / stale).write_bytes(b"int8 bytes that passed with an earlier model")
    with pytest.warns(match="replaced by model_mixed_int8.tflite"):
        manifest = export_artifacts(
            ExportOptions(
                out=out,
                model=tmp_path / "kws.keras",
                formats=["tflite-micro", "ethos-u"],
                data=tmp_path / "data.npz",
                npus=["ethos-u55-64"],
                figures=False,
            )
        )
    names = {a.name for a in manifest.artifacts}
    assert {"model_mixed_int8.tflite", "model_mixed_int8.cc", "model_mixed_int8.h"} <= names
    assert not {"model_int8.tflite", "model_int8.cc", "model_int8.h"} & names
    # Files this run declares but replaced are removed, not left beside the ones it lists.
    on_disk = {path.name for path in out.iterdir()}
    assert not {"model_int8.tflite", "model_int8.cc", "model_int8.h"} & on_disk
    mixed = (out / "model_mixed_int8.tflite").read_bytes()
    source = (out / "model_mixed_int8.cc").read_text()
    assert c_array_bytes(source) == mixed
    assert "g_kws_mixed_int8_model_data[]" in source  # named after the model and the file
    for name in ("model_mixed_int8.cc", "model_mixed_int8.h"):
        artifact = manifest.artifact(name)
        assert artifact.made_from == "model_mixed_int8.tflite" and artifact.variant == "mixed_int8"
        assert artifact.batch == 1
    assert manifest.artifact("model_float32.cc").made_from == "model_float32.tflite"
    check_compiled_for_the_npu(out, manifest, "model_mixed_int8")


def check_compiled_for_the_npu(out, manifest, source: str) -> None:
    """The committed int8 file compiled by Vela, with its C array, table and record."""
    compiled = f"{source}_vela_ethos-u55-64"
    assert not {f"model_int8_vela_ethos-u55-64.{s}" for s in ("tflite", "cc", "h")} & {
        a.name for a in manifest.artifacts
    }
    npu = manifest.artifact(f"{compiled}.tflite").npu
    assert npu["accelerator"] == "ethos-u55-64" and npu["source"] == f"{source}.tflite"
    assert manifest.artifact(f"{compiled}.tflite").made_from == f"{source}.tflite"
    assert (out / npu["per_layer"]).is_file() and npu["per_layer"].startswith("npu/")
    assert npu["estimate"]["label"] == "Vela's estimate, not a measurement"
    # The layer kept in float is no NPU operator: Vela leaves it to the CPU and says why.
    assert npu["estimate"]["cpu_operators"] >= 1 and npu["estimate"]["cpu_fallback"]
    assert manifest.artifact(f"{compiled}.cc").made_from == f"{compiled}.tflite"
    assert (
        c_array_bytes((out / f"{compiled}.cc").read_text())
        == (out / f"{compiled}.tflite").read_bytes()
    )
    assert "  resolver.AddEthosU();" in (out / f"{compiled}.h").read_text()
