"""The local executor's rows are what measuring in this process gives: the spawned worker adds
isolation, not different numbers, and its Measurement crosses the process boundary unchanged."""

import numpy as np
import pytest

from toolkit.comparing.data import EvalData
from toolkit.comparing.executors import EXECUTORS
from toolkit.comparing.measurement import Job, Measurement, MeasureSettings
from toolkit.comparing.worker import measure_job
from toolkit.data import Preprocessing
from toolkit.fsio import sha256_file
from toolkit.results import OK

ARTIFACT = "model_float32.tflite"
# Few calls: this test is about what comes back, not about how fast it is.
SETTINGS = MeasureSettings(runs=5, max_seconds=1.0, batch_size=8, warmup=1, max_memory_mb=2048)


def test_local_executor_rows_equal_measuring_in_process(tiny_model_dir, tmp_path):
    import ai_edge_litert.interpreter  # noqa: F401 - imported here, not frozen by measure_job

    items = np.random.default_rng(3).random((20, 28, 28), dtype=np.float32)
    data = EvalData.write(items, tmp_path, Preprocessing(1.0), (28, 28))
    job = Job(ARTIFACT, sha256_file(tiny_model_dir / ARTIFACT), "litert", SETTINGS)
    heard = []

    outcomes = EXECUTORS["local"]().run(
        [job], tiny_model_dir, data, lambda i, status, result: heard.append((i, status, result))
    )
    in_process = measure_job(job, tiny_model_dir / ARTIFACT, data)

    [(status, spawned)] = outcomes
    assert status == OK, spawned
    [(index, heard_status, heard_result)] = heard
    assert (index, heard_status) == (0, OK) and heard_result is spawned
    # Float32 LiteRT on one thread computes the same numbers in any process of this machine.
    assert list(spawned.outputs) == list(in_process.outputs)
    for name, array in in_process.outputs.items():
        assert array.shape[0] == len(items) and array.dtype == np.float32
        np.testing.assert_array_equal(spawned.outputs[name], array)
    assert spawned.machine == in_process.machine
    assert spawned.extras.keys() == in_process.extras.keys()
    for measured in (spawned, in_process):
        assert 1 <= len(measured.latencies_ns) <= SETTINGS.runs
        assert (measured.latencies_ns > 0).all()
        assert measured.throughput_ips > 0 and measured.load_ms >= 0 and measured.peak_rss_mb > 0


def test_an_in_process_measurement_survives_its_bytes(tiny_model_dir, tmp_path):
    items = np.random.default_rng(4).random((6, 28, 28), dtype=np.float32)
    data = EvalData.write(items, tmp_path, Preprocessing(1.0), (28, 28))
    job = Job(ARTIFACT, sha256_file(tiny_model_dir / ARTIFACT), "litert", SETTINGS)
    sent = measure_job(job, tiny_model_dir / ARTIFACT, data)

    back = Measurement.from_bytes(sent.to_bytes())

    assert list(back.outputs) == list(sent.outputs)
    for name, array in sent.outputs.items():
        np.testing.assert_array_equal(back.outputs[name], array)
    np.testing.assert_array_equal(back.latencies_ns, sent.latencies_ns)
    assert (back.throughput_ips, back.load_ms, back.peak_rss_mb) == (
        sent.throughput_ips,
        sent.load_ms,
        sent.peak_rss_mb,
    )
    assert back.extras == sent.extras and back.machine == sent.machine


PRELOADS = (("colorsys",), ("wave",))  # modules nothing else here imports


def preloaded(connection) -> None:
    """A worker that says which fork server's preload was imported before it ran."""
    import sys

    connection.send(("ok", [preload[0] in sys.modules for preload in PRELOADS]))


PROBE = """
import json
from toolkit.process import IsolatedRun
from tests.test_local_executor import PRELOADS, preloaded
runs = [IsolatedRun(preloaded, (), 60, 4096, preload=preload) for preload in PRELOADS * 2]
print(json.dumps([run.result() for run in runs]))
"""


@pytest.mark.parametrize(("name_length", "forked"), [(8, True), (120, False)])
def test_workers_fork_from_a_preloaded_server_or_spawn_when_it_cannot_start(name_length, forked):
    """A runtime's server_imports are imported once by a fork server its workers fork from, one
    server per distinct preload (a LiteRT worker is not forked with TensorFlow in it), reused by
    later workers; where a server cannot start (its socket's path in a long TMPDIR is over the
    kernel's limit) the worker is a spawned interpreter instead. Either way the temp folder
    ends empty."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    repo = Path(__file__).parent.parent
    temp = Path(tempfile.mkdtemp(prefix="tk-", dir="/tmp")) / ("t" * name_length)
    temp.mkdir()
    try:
        env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(repo)}
        done = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=repo
        )
        assert done.returncode == 0, done.stderr
        own_preload_only = [[True, False], [False, True]] * 2
        expected = own_preload_only if forked else [[False, False]] * 4
        assert json.loads(done.stdout) == [["ok", seen] for seen in expected]
        assert list(temp.iterdir()) == []
    finally:
        shutil.rmtree(temp.parent)
