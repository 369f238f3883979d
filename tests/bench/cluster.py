"""compare over two device labels of a Ray cluster against one (issue 23: at most 1.3x).

`python -m tests.bench.cluster --out OUT` (part 11 of `make bench`, alone) re-runs itself inside
a network namespace (root: `unshare -n`, loopback only), starts the tests' local cluster (a head
labelled sim-a and a node labelled sim-b, one CPU each), times `toolkit.compare` of OUT with
`--device sim-a` and with `--device sim-a --device sim-b`, alternating, and prints the ratio of
the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.summary import Ratio

GOAL = 1.30
REPS = 3
SETTINGS = {"runs": 1000, "max_seconds": 1.0, "batch_size": 32}


def _timed_compare(out: Path, address: str, labels: tuple[str, ...], runtimes) -> float:
    import toolkit

    start = time.perf_counter()
    toolkit.compare(out, cluster=address, devices=list(labels), runtimes=runtimes, **SETTINGS)
    return time.perf_counter() - start


def measure(out: Path, reps: int, runtimes) -> dict:
    """Inside the namespace: wall seconds of each compare, one label and two, alternating."""
    from tests.cluster_scenarios import LABELS, start_cluster

    cluster, _ = start_cluster()
    try:
        one, two = [], []
        for _ in range(reps):
            one.append(_timed_compare(out, cluster.address, LABELS[:1], runtimes))
            two.append(_timed_compare(out, cluster.address, LABELS, runtimes))
    finally:
        cluster.shutdown()
    return {"one": one, "two": two}


def skip_reason() -> str | None:
    """Why this part cannot run here (no Ray, no unshare, not root), or None."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'toolkit[cluster]')"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "needs root and unshare for a loopback-only network namespace"
    return None


def cluster_timings(out: Path, reps: int = REPS, runtimes=("litert", "onnxruntime")) -> dict:
    """The wall seconds, measured in a namespace of its own (this process stays outside it)."""
    import json

    ray_tmp = tempfile.mkdtemp(prefix="tk-ray-", dir="/tmp")
    results = Path(ray_tmp) / "results.json"
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom tests.bench.cluster import measure\n"
        "r = measure(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[4].split(','))\n"
        "Path(sys.argv[3]).write_text(json.dumps(r))\n"
    )
    args = [str(out), str(reps), str(results), ",".join(runtimes)]
    script = " ".join([sys.executable, "-c", _quote(code), *map(_quote, args)])
    try:
        subprocess.run(
            ["unshare", "-n", "--", "sh", "-c", f"ip link set lo up && exec {script}"],
            cwd=Path(__file__).parents[2],
            env={**os.environ, "RAY_TMPDIR": ray_tmp},
            check=True,
            timeout=3600,
        )
        seconds = json.loads(results.read_text())
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    one, two = statistics.median(seconds["one"]), statistics.median(seconds["two"])
    return {**seconds, "median_one": one, "median_two": two, "runtimes": list(runtimes)}


def cluster_ratios(result: dict) -> list[Ratio]:
    """compare's wall time over two labels / over one (ratio of the medians)."""
    one, two = result["median_one"], result["median_two"]
    return [
        Ratio(
            "cluster_two_labels_vs_one",
            two / one,
            f"<= {GOAL:.2f}x",
            two / one <= GOAL,
            "compare's wall time over two device labels / over one, local Ray cluster",
            f"one label {one:.1f} s, two {two:.1f} s (medians of {len(result['one'])})",
        )
    ]


def cluster_markdown(result: dict) -> str:
    """bench.md's section: each turn's wall seconds, or why the part was skipped."""
    title = "## 11. compare over two Ray device labels against one\n\n"
    if "skipped" in result:
        return title + f"Skipped: {result['skipped']}."
    lines = ["| turn | one label s | two labels s |", "|---|---|---|"]
    turns = zip(result["one"], result["two"], strict=True)
    lines += [f"| {turn} | {one:.1f} | {two:.1f} |" for turn, (one, two) in enumerate(turns, 1)]
    lines.append(f"| **median** | {result['median_one']:.1f} | {result['median_two']:.1f} |")
    return (
        title + "A local Ray cluster in a network namespace of its own (loopback only): a head "
        "labelled `sim-a` and a node labelled `sim-b`, one CPU each, on this machine's cores. "
        "`toolkit.compare` of OUT in " + ", ".join(result["runtimes"]) + " with `--device "
        "sim-a`, then with `--device sim-a --device sim-b`, in turns.\n\n" + "\n".join(lines)
    )


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("exported"))
    parser.add_argument("--reps", type=int, default=REPS)
    arguments = parser.parse_args()
    (ratio,) = cluster_ratios(cluster_timings(arguments.out.resolve(), arguments.reps))
    print(f"{ratio.name}: {ratio.value:.3f}x (goal {ratio.goal}) {ratio.detail}")
