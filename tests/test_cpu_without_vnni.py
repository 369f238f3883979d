"""The ONNX int8 reduce_range retry, proved on an AVX2-only CPU emulated by qemu-user.

Without AVX-512 VNNI, ONNX Runtime multiplies uint8 activations by int8 weights with an
instruction that adds each pair of products into 16 bits and saturates. A MatMul whose weight
pairs share a sign, fed activations near the top of their range, overflows that sum: the 8-bit
file misses the variant's bound on such a CPU, while the 7-bit weights of `reduce_range` cannot
overflow it. Nothing is mocked: the Haswell CPU is qemu's (`qemu-x86_64 -cpu Haswell`) running
this venv's own Python, ONNX Runtime and toolkit runner.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from toolkit.exporters.onnx import INT8
from toolkit.metrics import compare_outputs
from toolkit.quantization.qdq import quantize_qdq
from toolkit.runners import RUNNERS

QEMU = shutil.which("qemu-x86_64")
pytestmark = pytest.mark.skipif(
    QEMU is None or platform.machine() != "x86_64",
    reason="needs qemu-x86_64 (Debian qemu-user, `make system`) on an x86-64 host",
)

# Runs inside the emulated CPU: one interpreter imports once and runs every file, printing
# numpy's view of the CPU and each file's outputs as one JSON line.
EMULATED = """
import json, sys
# As on a device with only onnxruntime installed: the runner then skips its onnx-package
# check (the host ran it on these files), because importing onnx's ml_dtypes under emulation
# costs more than the whole rest of this process.
sys.modules["onnx"] = None
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__ as cpu
from toolkit.runners import RUNNERS

items = np.load(sys.argv[1])
result = {"cpu": {name: bool(cpu.get(name)) for name in ("AVX2", "AVX512F", "AVX512VNNI")}}
for path in sys.argv[2:]:
    with RUNNERS["onnxruntime"](path) as runner:
        result[path] = runner.predict(items)["y"].tolist()
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """The float MatMul, its items and reference outputs, and its two int8 QDQ files."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("without_vnni")
    rng = np.random.default_rng(0)
    # Adjacent weights share a sign, so each pair of products adds up instead of cancelling.
    weights = np.repeat(rng.choice([-1.0, 1.0], size=(32, 8)), 2, axis=0).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["images", "w"], ["y"])],
        "crafted",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model_float32.onnx")
    # Activations near the top of the calibrated range quantize near the largest code.
    items = rng.uniform(0.9, 1.0, size=(64, 64)).astype(np.float32)
    np.save(folder / "items.npy", items)
    files = {"8-bit": folder / "model_int8.onnx", "reduce_range": folder / "model_int8_rr.onnx"}
    quantize_qdq(folder / "model_float32.onnx", files["8-bit"], items)
    quantize_qdq(folder / "model_float32.onnx", files["reduce_range"], items, reduce_range=True)
    return {"items": folder / "items.npy", "reference": items @ weights, "files": files}


@pytest.fixture(scope="module")
def haswell(crafted):
    """numpy's CPU features and each file's outputs, from one process on an emulated Haswell."""
    paths = [str(path) for path in crafted["files"].values()]
    command = [QEMU, "-cpu", "Haswell", sys.executable, "-c", EMULATED, str(crafted["items"])]
    done = subprocess.run(command + paths, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    outputs = {kind: np.array(result[str(p)]) for kind, p in crafted["files"].items()}
    return result["cpu"], outputs


def failures(outputs, reference) -> list[str]:
    """What the ONNX int8 variant's tolerance says about these outputs (empty when met)."""
    return INT8.failures(compare_outputs(outputs, reference, class_scores=False))


def test_the_emulated_cpu_has_avx2_without_avx512_or_vnni(haswell):
    cpu, _ = haswell
    assert cpu == {"AVX2": True, "AVX512F": False, "AVX512VNNI": False}


def test_without_vnni_the_8bit_file_misses_its_bound_and_reduce_range_meets_it(crafted, haswell):
    _, outputs = haswell
    assert failures(outputs["8-bit"], crafted["reference"]), "the 8-bit file met the bound"
    assert failures(outputs["reduce_range"], crafted["reference"]) == []


def test_the_reduce_range_file_meets_its_bound_on_this_cpu(crafted):
    # Only reduce_range: the 8-bit file meets it with VNNI and misses it without.
    with RUNNERS["onnxruntime"](crafted["files"]["reduce_range"]) as runner:
        outputs = runner.predict(np.load(crafted["items"]))["y"]
    assert failures(outputs, crafted["reference"]) == []
