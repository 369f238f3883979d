"""Batch-1 p50 through the device agent against a bare `invoke()` loop on the same device Python.

The device is the loopback sshd of the tests (tests/ssh_device.py) with its device venv; both
figures come from that venv's Python, started through ssh. `python -m tests.bench.device --out
OUT` prints the ratio for each float32 and int8 .tflite of OUT.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tests.bench.summary import Ratio
from toolkit.comparing.measurement import Job, Measurement, MeasureSettings
from toolkit.metrics import latency_percentiles

GOAL = 1.10  # the agent's p50 within 10% of the bare loop's (issue 22)
RUNS, WARMUP = 2000, 50

# The floor: an interpreter, its input set once, `invoke()` timed alone, as the agent's runner
# binds it (XNNPACK, one thread); prints the p50 in ns.
BARE_LOOP = """\
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
for _ in range(int(sys.argv[3])):
    interpreter.invoke()
samples, clock = [], time.perf_counter_ns
for _ in range(int(sys.argv[2])):
    start = clock()
    interpreter.invoke()
    samples.append(clock() - start)
print(int(np.median(samples)))
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def agent_p50_ms(session, model: Path, items: Path, input_shape, scale: float) -> float:
    """The toolkit's batch-1 p50 for `model`, measured by the agent on the device."""
    session.put(model.name, model, _sha256(model))
    settings = MeasureSettings(runs=RUNS, warmup=WARMUP, max_seconds=30.0, batch_size=8)
    job = Job(model.name, _sha256(model), "litert", settings)
    data = {"items": items.name, "scale": scale, "offset": 0.0, "input_shape": list(input_shape)}
    reply, payload = session.measure({"job": job.to_json(), "data": data}, 120, 1 << 28)
    if reply.get("status") != "ok":
        raise RuntimeError(f"{model.name}: {reply}")
    return latency_percentiles(Measurement.from_bytes(payload).latencies_ns)["p50"]


def bare_p50_ms(device, model: Path) -> float:
    """A bare invoke loop's p50 on the device's Python, started through the same ssh."""
    import shlex

    remote = shlex.join([str(device.python), "-c", BARE_LOOP, str(model), str(RUNS), str(WARMUP)])
    command = ["ssh", "-F", str(device.config), "toolkit-device", remote]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return int(result.stdout.split()[-1]) / 1e6


def device_ratios(out: Path) -> list[Ratio]:
    """One ratio per float32/int8 .tflite of `out`: agent p50 / bare-loop p50 on the device."""
    from tests.ssh_device import device_venv, start_sshd, stop_sshd
    from toolkit.comparing.ssh import AgentSession, parse_device
    from toolkit.store import load_manifest

    preprocessing = load_manifest(out).preprocessing if (out / "manifest.json").exists() else {}
    shape = tuple(int(d) for d in preprocessing.get("input_shape", (28, 28)))
    scale = float(preprocessing.get("scale", 1 / 255))
    models = [out / name for name in ("model_float32.tflite", "model_int8.tflite")]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-device-") as folder:
        device = start_sshd(Path(folder) / "sshd", device_venv())
        try:
            items = Path(folder) / "items.npy"
            np.save(items, np.zeros((64, *shape), np.uint8), allow_pickle=False)
            with AgentSession(parse_device(device.url()), device.config) as session:
                session.put(items.name, items, _sha256(items))
                timings = {
                    m: agent_p50_ms(session, m, items, shape, scale) for m in models if m.exists()
                }
            for model, agent in timings.items():
                bare = bare_p50_ms(device, model)
                ratios.append(
                    Ratio(
                        f"device_agent_vs_bare_{model.stem.removeprefix('model_')}",
                        agent / bare,
                        f"<= {GOAL:.2f}x",
                        agent / bare <= GOAL,
                        "batch-1 p50 through the ssh agent / a bare invoke() loop, same device",
                        f"agent {agent:.4f} ms, bare {bare:.4f} ms",
                    )
                )
        finally:
            stop_sshd(device.process)
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("exported"))
    for ratio in device_ratios(parser.parse_args().out):
        print(f"{ratio.name}: {ratio.value:.3f}x (goal {ratio.goal}) {ratio.detail}")
