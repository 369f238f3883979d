"""`compare --cluster`: rows measured on a real local Ray cluster (a head and a second node with
two device labels) started inside a network namespace, so its traffic stays on loopback.

One cluster serves the module: tests/cluster_scenarios.py runs every scenario in the namespace
and the tests assert on what it wrote. Deselect them with `-m "not ray"`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import models
from tests.cluster_scenarios import COUNT, SHAPE, namespaces_work

LABELS = ("sim-a", "sim-b")
SCENARIO_SECONDS = 320  # a bound on the wait only (the background run's own bound is 300 s)


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return path.exists()


def _log_tail(folder: Path) -> str:
    log = folder / "log.txt"
    return log.read_bytes()[-3000:].decode(errors="replace") if log.exists() else "no log"


@pytest.fixture(scope="module")
def cluster_out(cluster_scenarios_started, tmp_path_factory) -> Path:
    """A tiny classifier exported as .keras, .tflite and .onnx on synthetic .npz data: a copy of
    the one the background scenarios exported, or made here when they do not run."""
    folder, copy = cluster_scenarios_started, tmp_path_factory.mktemp("cluster_out")
    if folder.exists():
        _wait_for(folder / "exported", SCENARIO_SECONDS)
    if (folder / "exported").exists():
        return Path(shutil.copytree(folder / "exported" / "out", copy / "out"))
    return models.export_tiny_classifier(copy, SHAPE, COUNT, 2)


@pytest.fixture(scope="module")
def scenarios(cluster_scenarios_started) -> dict:
    """What every scenario of tests/cluster_scenarios.py saw on the namespace's cluster (run in
    the background since the session started: see tests/conftest.py)."""
    pytest.importorskip("ray")
    if not namespaces_work():
        pytest.fail("the Ray tests need unshare -n and ip (util-linux, iproute2) and root")
    folder = cluster_scenarios_started
    if not _wait_for(folder / "done", SCENARIO_SECONDS):
        pytest.fail(f"the scenarios did not end in {SCENARIO_SECONDS} s: {_log_tail(folder)}")
    results = folder / "results.json"
    if not results.is_file():
        pytest.fail(f"the scenarios wrote nothing: {_log_tail(folder)}")
    return json.loads(results.read_text())


def _by_device(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["device"]["name"], []).append(row)
    return grouped


@pytest.mark.ray
def test_rows_land_on_the_node_carrying_their_label(scenarios):
    two = scenarios["two"]
    assert "rows" in two, two
    grouped = _by_device(two["rows"])
    assert set(grouped) == {"local", *LABELS}
    assert [row["runtime"] for row in grouped["local"]] == ["keras"]  # the reference stays home
    for label in LABELS:
        rows = grouped[label]
        assert len(rows) >= 3 and all(row["status"] == "ok" for row in rows), rows
        for row in rows:
            device = row["device"]
            assert device["node_id"] == scenarios["nodes"][label]
            assert device["label"] == label
            assert device["cores"] >= 1 and device["os"] and device["cpu"]
            assert device["versions"]  # the runtime's version on that node
    pairs = {label: {(r["artifact"], r["runtime"]) for r in grouped[label]} for label in LABELS}
    assert pairs[LABELS[0]] == pairs[LABELS[1]]  # every row on each label
    assert {runtime for _, runtime in pairs[LABELS[0]]} == {"litert", "onnxruntime"}
    assert not scenarios["connected_after"]  # compare closed its Ray connection


@pytest.mark.ray
def test_an_unknown_label_stops_before_anything_runs(scenarios):
    unknown = scenarios["unknown"]
    assert unknown["code"] == 2, unknown
    assert "sim-x" in unknown["error"] and all(label in unknown["error"] for label in LABELS)
    assert unknown["report_kept"]
    no_label = scenarios["no_label"]
    assert no_label["code"] == 2 and "--device LABEL" in no_label["error"], no_label


@pytest.mark.ray
def test_a_ray_client_address_measures_on_the_labelled_node(scenarios):
    """`--cluster ray://HOST:PORT`: Ray Client's server on the head, as from outside the cluster
    (the scenarios after it connect to the GCS address again in the same process)."""
    client = scenarios["client"]
    assert "rows" in client, client
    grouped = _by_device(client["rows"])
    assert set(grouped) == {"local", LABELS[0]}
    rows = grouped[LABELS[0]]
    assert rows and all(row["status"] == "ok" for row in rows), rows
    assert {row["device"]["node_id"] for row in rows} == {scenarios["nodes"][LABELS[0]]}


@pytest.mark.ray
def test_sigterm_cancels_the_rows_and_keeps_the_previous_report(scenarios):
    stopped = scenarios["sigterm"]
    assert stopped["code"] not in (0, None), stopped
    assert stopped["report_kept"], stopped
    assert "Traceback" not in stopped["stderr"], stopped["stderr"]
    # Each row asked for 20 s of timing: a stop that waited for the running rows takes longer.
    assert stopped["stop_seconds"] < 20, stopped
    assert scenarios["after_sigterm"]["cpus"] == 2  # every node's hold released


@pytest.mark.ray
def test_a_killed_node_fails_its_rows_and_the_others_complete(scenarios):
    killed = scenarios["killed"]
    assert killed["killed"] and "rows" in killed, killed
    grouped = _by_device(killed["rows"])
    assert all(row["status"] == "ok" for row in grouped[LABELS[0]])
    after = grouped[LABELS[1]][1:]  # the first sim-b row ended before the kill
    assert after and all(row["status"] == "failed" for row in after), after
    node = scenarios["nodes"][LABELS[1]]
    for row in after:  # Ray's reason, naming the node that died
        assert f"node {node[:12]} ({LABELS[1]}):" in row["error"], row
        assert row["device"]["node_id"] == node


def _toolkit(*args: str, block_ray: bool = False, timeout: float = 60):
    """`toolkit ARGS` in a fresh Python; with `block_ray`, as if Ray were not installed."""
    prelude = "import sys\n" + ("sys.modules['ray'] = None\n" if block_ray else "")
    code = prelude + "from toolkit import main\nsys.argv = ['toolkit', *sys.argv[1:]]\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )


def test_import_and_help_never_import_ray():
    code = (
        "import sys, toolkit, toolkit.api, toolkit.comparing.executors\n"
        "from typer.testing import CliRunner\n"
        "from toolkit.cli.app import app\n"
        "result = CliRunner().invoke(app, ['compare', '--help'])\n"
        "assert '--cluster' in result.output, result.output\n"
        "print('ray' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_cluster_without_ray_says_how_to_install_it(cluster_out):
    done = _toolkit(
        "compare",
        "--out",
        str(cluster_out),
        "--cluster",
        "127.0.0.1:1",
        "--device",
        "sim-a",
        "--no-figures",
        block_ray=True,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'toolkit[cluster]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("address", ["", "host:port", "ray://", "a b:1", "host:0", "x/y:1"])
def test_odd_cluster_addresses_are_refused(address):
    from toolkit.comparing.executors.ray import split_address
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError) as caught:
        split_address(address)
    assert caught.value.code == 2


def test_an_unreachable_cluster_is_one_line_naming_it(cluster_out):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    command = ["compare", "--out", str(cluster_out), "--cluster", address, "--device", "sim-a"]
    done = _toolkit(*command, "--no-figures")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert address in lines[0] and "cannot reach" in lines[0]


def test_a_runtime_version_that_differs_between_nodes_shows_in_its_rows():
    from toolkit.reporting.cells import columns
    from toolkit.results import Report, Row

    def row(device: str, version: str, status: str = "ok") -> Row:
        described = {"name": device, "label": device, "versions": {"ai-edge-litert": version}}
        return Row("m.tflite", "tflite", "float32", "litert", 10, status=status, device=described)

    rows = (row("local", "2.1.0"), row("rpi5", "2.1.0"), row("jetson", "2.0.3"))
    report = Report(1, "model.keras", "", {}, [], 1, {}, rows)
    device = next(column for column in columns(report) if column.header == "device")
    assert [device.cell(r) for r in rows] == [
        "local (ai-edge-litert 2.1.0)",
        "rpi5 (ai-edge-litert 2.1.0)",
        "jetson (ai-edge-litert 2.0.3)",
    ]
    same = report.with_(rows=rows[:2] + (row("jetson", "2.1.0", "failed"),))
    device = next(column for column in columns(same) if column.header == "device")
    assert [device.cell(r) for r in same.rows] == ["local", "rpi5", "jetson"]
