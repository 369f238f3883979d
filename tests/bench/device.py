"""Batch-1 p50 through the device agent against a bare `invoke()` loop on the same device Python.

The device is the loopback sshd of the tests (tests/ssh_device.py) with its device venv; both
figures come from that venv's Python, started through ssh, in turns (agent, bare, agent, bare)
so drift hits both; the ratio is the median of the turns' ratios. `python -m tests.bench.device
--out OUT` (part 10 of `make bench`, alone) prints it for each float32 and int8 .tflite of OUT.
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
REPS = 3  # turns of agent then bare loop per model; the ratio is their median

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


def skip_reason() -> str | None:
    """Why this part cannot run here (no sshd or ssh client), or None."""
    from tests.ssh_device import sshd_available

    return None if sshd_available() else "sshd or the ssh client is not installed (make system)"


def _timings(device, models: list[Path], items: Path, shape, scale: float, reps: int) -> dict:
    """Per model, `reps` agent and bare p50s in turns (agent, bare, agent, bare ...)."""
    from toolkit.comparing.ssh import AgentSession, parse_device

    timings = {model.name: {"agent_ms": [], "bare_ms": []} for model in models}
    with AgentSession(parse_device(device.url()), device.config) as session:
        session.put(items.name, items, _sha256(items))
        for _ in range(reps):
            for model in models:
                agent = agent_p50_ms(session, model, items, shape, scale)
                timings[model.name]["agent_ms"].append(agent)
                timings[model.name]["bare_ms"].append(bare_p50_ms(device, model))
    return timings


def device_timings(out: Path, reps: int = REPS) -> dict:
    """The loopback device's agent and bare-loop p50s for OUT's float32 and int8 .tflite."""
    from tests.ssh_device import device_venv, start_sshd, stop_sshd
    from toolkit.store import load_manifest

    preprocessing = load_manifest(out).preprocessing if (out / "manifest.json").exists() else {}
    shape = tuple(int(d) for d in preprocessing.get("input_shape", (28, 28)))
    scale = float(preprocessing.get("scale", 1 / 255))
    names = ("model_float32.tflite", "model_int8.tflite")
    models = [out / name for name in names if (out / name).exists()]
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-device-") as folder:
        device = start_sshd(Path(folder) / "sshd", device_venv())
        try:
            items = Path(folder) / "items.npy"
            np.save(items, np.zeros((64, *shape), np.uint8), allow_pickle=False)
            timings = _timings(device, models, items, shape, scale, reps)
        finally:
            stop_sshd(device.process)
    for timing in timings.values():
        pairs = zip(timing["agent_ms"], timing["bare_ms"], strict=True)
        timing["ratios"] = [agent / bare for agent, bare in pairs]
        timing["ratio"] = float(np.median(timing["ratios"]))
    return {"runs": RUNS, "warmup": WARMUP, "reps": reps, "models": timings}


def device_ratios(result: dict) -> list[Ratio]:
    """One ratio per .tflite: the median over turns of agent p50 / bare-loop p50."""
    ratios = []
    for name, timing in result["models"].items():
        agent, bare = np.median(timing["agent_ms"]), np.median(timing["bare_ms"])
        ratios.append(
            Ratio(
                f"device_agent_vs_bare_{Path(name).stem.removeprefix('model_')}",
                timing["ratio"],
                f"<= {GOAL:.2f}x",
                timing["ratio"] <= GOAL,
                "batch-1 p50 through the ssh agent / a bare invoke() loop, same device",
                f"agent {agent:.4f} ms, bare {bare:.4f} ms (medians of {result['reps']} turns)",
            )
        )
    return ratios


def device_markdown(result: dict) -> str:
    """bench.md's section: each turn's p50s and ratio, or why the part was skipped."""
    title = "## 10. The ssh device agent against a bare `invoke()` loop on the device\n\n"
    if "skipped" in result:
        return title + f"Skipped: {result['skipped']}."
    lines = ["| model | turn | agent p50 µs | bare p50 µs | ratio |", "|---|---|---|---|---|"]
    for name, timing in result["models"].items():
        turns = zip(timing["agent_ms"], timing["bare_ms"], timing["ratios"], strict=True)
        for turn, (agent, bare, ratio) in enumerate(turns, 1):
            lines.append(f"| `{name}` | {turn} | {1000 * agent:.2f} | {1000 * bare:.2f} | "
                         f"{ratio:.3f} |")  # fmt: skip
    return (
        title + "The loopback sshd of the tests with its device venv (numpy and the runtimes, "
        "no TensorFlow): batch-1 p50 of the agent's LiteRT row over "
        f"{result['runs']} runs after {result['warmup']} warm-up calls, against a bare loop of "
        "`invoke()` on one interpreter in the same venv's Python, started through the same "
        "ssh; in turns (agent, bare), the ratio is the median of the turns' ratios.\n\n"
        + "\n".join(lines)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("exported"))
    parser.add_argument("--reps", type=int, default=REPS)
    arguments = parser.parse_args()
    for ratio in device_ratios(device_timings(arguments.out.resolve(), arguments.reps)):
        print(f"{ratio.name}: {ratio.value:.3f}x (goal {ratio.goal}) {ratio.detail}")
