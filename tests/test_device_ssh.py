"""`--device ssh://`: rows measured through a real sshd on loopback, by the agent running in a
device venv that has numpy, ai-edge-litert and onnxruntime and no TensorFlow."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests import models
from toolkit.comparing.measurement import Job, Measurement, MeasureSettings
from toolkit.errors import ExitCode, ToolkitError

QUICK = {"runs": 20, "max_seconds": 0.2, "batch_size": 8}
COUNT = 64
SHAPE = (12, 12)
ONNX = "model_float32.onnx"
HEAVY = ("tensorflow", "keras", "typer", "rich", "matplotlib")


@pytest.fixture(scope="module")
def device_out(tmp_path_factory) -> Path:
    """A tiny classifier exported as .keras, .tflite and .onnx on synthetic .npz data."""
    return models.export_tiny_classifier(tmp_path_factory.mktemp("device_out"), SHAPE, COUNT)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _request(out: Path, name: str, runtime: str, **settings) -> tuple[dict, Job]:
    job = Job(name, _sha256(out / name), runtime, MeasureSettings(**{**QUICK, **settings}))
    data = {"items": "items.npy", "scale": 1 / 255, "offset": 0.0, "input_shape": list(SHAPE)}
    return {"job": job.to_json(), "data": data}, job


def _items(tmp_path: Path) -> Path:
    path = tmp_path / "items.npy"
    np.save(path, models.class_images(COUNT, SHAPE, 4, seed=1)[0], allow_pickle=False)
    return path


def _session(ssh_device, tmp_path, python=None, **query):
    from toolkit.comparing.ssh import AgentSession, parse_device

    device = parse_device(ssh_device.url(python, tmpdir=str(tmp_path), **query))
    return AgentSession(device, ssh_device.config)


@pytest.mark.parametrize(
    "text",
    [
        "ssh://-oProxyCommand=x",
        "ssh://user:secret@host",
        "ssh://host/path",
        "ssh://host:99999",
        "ssh://host?python=python3&shell=bash",
        "ssh://host?python=py;rm",
        "ssh://host?tmpdir=relative",
        "ssh://ho st",
        "http://host",
        "ssh://",
    ],
)
def test_odd_device_strings_are_refused(text):
    from toolkit.comparing.ssh import parse_device

    with pytest.raises(ToolkitError) as caught:
        parse_device(text)
    assert caught.value.code == ExitCode.USAGE and text in str(caught.value)


def test_device_strings_name_user_host_port_and_python():
    from toolkit.comparing.ssh import parse_device, ssh_command

    device = parse_device("ssh://pi@pi5.local:2222?python=/home/pi/venv/bin/python")
    assert (device.user, device.host, device.port) == ("pi", "pi5.local", 2222)
    assert device.python == "/home/pi/venv/bin/python"
    assert str(parse_device(str(device))) == str(device)
    command = ssh_command(device, Path("/cfg"), "true")
    assert command[:3] == ["ssh", "-F", "/cfg"] and command[-3:] == ["--", "pi5.local", "true"]
    assert "BatchMode=yes" in command and not any("StrictHostKey" in c for c in command)
    assert parse_device("ssh://alias").python == "python3"


def test_the_agent_measures_like_the_local_worker_and_imports_no_tensorflow(
    ssh_device, device_out, tmp_path
):
    from toolkit.comparing.data import EvalData
    from toolkit.comparing.worker import measure_job
    from toolkit.data import Preprocessing
    from toolkit.runners import RUNNERS

    items = _items(tmp_path)
    data = EvalData(items, Preprocessing(1 / 255), SHAPE)
    device_tmp = tmp_path / "device"
    device_tmp.mkdir()
    with _session(ssh_device, device_tmp) as session:
        assert session.python == str(ssh_device.python)
        assert session.missing_package("litert") is None
        assert session.missing_package("keras") == RUNNERS["keras"].package
        session.put("items.npy", items, _sha256(items))
        for name, runtime in (
            ("model_float32.tflite", "litert"),
            ("model_float32.onnx", "onnxruntime"),
        ):
            session.put(name, device_out / name, _sha256(device_out / name))
            request, job = _request(device_out, name, runtime)
            reply, payload = session.measure(request, 60, 1 << 24)
            assert reply["status"] == "ok", reply
            remote = Measurement.from_bytes(payload)
            local = measure_job(job, device_out / name, data)
            # Same runtime versions, same file, same inputs: the same numbers, bit for bit.
            np.testing.assert_array_equal(remote.first_output, local.first_output)
            assert remote.machine["versions"] == local.machine["versions"]
            assert len(remote.latencies_ns) > 0
    _assert_emptied(device_tmp)
    # The device side of that path, run in the device venv: no TensorFlow, Keras, typer, rich
    # or matplotlib is imported (the venv has none of them; an import would also fail).
    probe = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('toolkit.comparing.agent', run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    folder = tmp_path / "probe"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "items.npy").write_bytes(items.read_bytes())
    (folder / "files" / "model_float32.onnx").write_bytes(
        (device_out / "model_float32.onnx").read_bytes()
    )
    request, _ = _request(device_out, "model_float32.onnx", "onnxruntime")
    (folder / "job.json").write_text(json.dumps(request))
    result = _device_python(ssh_device.python, tmp_path, probe, "measure", str(folder))
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
    assert json.loads((folder / "status.json").read_text()) == {"status": "ok"}


def _device_python(python: Path, tmp_path: Path, code: str, *args: str):
    """`code` in the device venv with toolkit imported from the zip the agent is sent as."""
    from toolkit.comparing.ssh import agent_package

    package = tmp_path / "toolkit.zip"
    package.write_bytes(agent_package())
    env = {"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(python), "-c", code, *args], capture_output=True, text=True, env=env, timeout=60
    )


def _assert_emptied(folder: Path, seconds: float = 5.0) -> None:
    """The agent removes its folder when its session ends (at once, or when its input closes)."""
    deadline = time.monotonic() + seconds
    while any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(folder.iterdir()) == []


def test_a_closed_port_is_ssh_s_own_one_line_reason(ssh_device, tmp_path):
    from tests.ssh_device import free_port, write_client_config
    from toolkit.comparing.ssh import AgentSession, DeviceUnreachable, parse_device

    config = write_client_config(ssh_device.folder, free_port(), ssh_device.known_hosts, "closed")
    with pytest.raises(DeviceUnreachable) as caught:
        AgentSession(parse_device(ssh_device.url()), config)
    assert "Connection refused" in str(caught.value) and "\n" not in str(caught.value)


def test_a_host_key_that_does_not_match_is_refused_before_anything_runs(ssh_device, tmp_path):
    from tests.ssh_device import _keygen, write_client_config
    from toolkit.comparing.ssh import AgentSession, parse_device

    other = _keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh_device.port} {other}\n")
    config = write_client_config(ssh_device.folder, ssh_device.port, known, "wrong_key")
    device_tmp = tmp_path / "device"
    device_tmp.mkdir()
    with pytest.raises(ToolkitError) as caught:
        AgentSession(parse_device(ssh_device.url(tmpdir=str(device_tmp))), config)
    assert caught.value.code == ExitCode.USAGE
    assert "Host key verification failed" in str(caught.value)
    assert list(device_tmp.iterdir()) == []  # nothing was sent, nothing ran


def test_a_row_killed_on_the_device_fails_and_the_next_row_runs(ssh_device, device_out, tmp_path):
    items = _items(tmp_path)
    device_tmp = tmp_path / "device"
    device_tmp.mkdir()
    name = "model_float32.tflite"
    with _session(ssh_device, device_tmp) as session:
        session.put("items.npy", items, _sha256(items))
        session.put(name, device_out / name, _sha256(device_out / name))
        # A row that would time for a minute, killed on the device once it started.
        slow, _ = _request(device_out, name, "litert", runs=10**9, max_seconds=60.0)
        killer = threading.Thread(target=_kill_worker, args=(device_tmp,), daemon=True)
        killer.start()
        reply, payload = session.measure(slow, 120, 1 << 24)
        killer.join()
        assert reply["status"] == "failed" and "SIGKILL" in reply["reason"], reply
        reply, payload = session.measure(_request(device_out, name, "litert")[0], 60, 1 << 24)
        assert reply["status"] == "ok" and Measurement.from_bytes(payload)
    _assert_emptied(device_tmp)


def _kill_worker(device_tmp: Path) -> None:
    """Kills the agent's worker (a process this test started, through sshd) by its pid file."""
    import os
    import signal

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid_file in device_tmp.glob("toolkit-agent-*/worker.pid"):
            time.sleep(0.5)  # into its timing loop
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            return
        time.sleep(0.05)


def test_a_device_python_without_the_runtime_names_the_package(ssh_device, device_out, tmp_path):
    from tests.ssh_device import venv_without
    from toolkit.comparing.data import EvalData
    from toolkit.comparing.executors.ssh import SshExecutor
    from toolkit.data import Preprocessing

    python = venv_without(ssh_device.python, tmp_path / "no_ort", "onnxruntime")
    device = ssh_device.url(python, tmpdir=str(tmp_path))
    data = EvalData(_items(tmp_path), Preprocessing(1 / 255), SHAPE)
    jobs = [_request(device_out, ONNX, "onnxruntime")[1]]
    jobs.append(_request(device_out, "model_float32.tflite", "litert")[1])
    heard = []
    outcomes = SshExecutor(device, ssh_device.config).run(
        jobs, device_out, data, lambda i, status, result: heard.append(status)
    )
    (status, reason), (litert_status, measurement) = outcomes
    assert status == "unsupported" and "onnxruntime is not installed" in reason
    assert str(python) in reason and "pip install onnxruntime" in reason
    assert litert_status == "ok" and isinstance(measurement, Measurement)
    assert heard == ["unsupported", "ok"]
    assert list(tmp_path.glob("toolkit-agent-*")) == []


def test_stale_folders_of_dead_agents_go_at_the_next_connection(ssh_device, tmp_path):
    dead = tmp_path / "toolkit-agent-dead"
    dead.mkdir()
    (dead / "agent.pid").write_text(f"{_dead_pid()} 1")
    live = tmp_path / "toolkit-agent-live"
    live.mkdir()
    import os

    (live / "agent.pid").write_text(f"{os.getpid()} ")
    with _session(ssh_device, tmp_path):
        pass
    assert not dead.exists() and live.exists()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _with_closed_alias(ssh_device, tmp_path) -> tuple[Path, str]:
    """The fixture's client config plus an alias whose port nothing listens on."""
    from tests.ssh_device import free_port

    text = ssh_device.config.read_text()
    closed = text.replace("Host toolkit-device", "Host toolkit-closed").replace(
        f"Port {ssh_device.port}", f"Port {free_port()}"
    )
    config = tmp_path / "ssh_config"
    config.write_text(text + closed)
    return config, "ssh://toolkit-closed"


def test_compare_on_the_loopback_device_matches_local_and_an_unreachable_one_fails(
    ssh_device, device_out, tmp_path
):
    import toolkit

    config, closed = _with_closed_alias(ssh_device, tmp_path)
    loopback = ssh_device.url(tmpdir=str(tmp_path))
    report = toolkit.compare(
        device_out,
        **QUICK,
        runtimes=["keras", "litert"],  # ONNX Runtime's identity is the agent test's
        devices=["local", loopback, closed],
        ssh_config=config,
        figures=False,
    )
    local = {row.key: row for row in report.rows if row.device_name == "local"}
    remote = [row for row in report.rows if row.device_name == str(_parsed(loopback))]
    failed = [row for row in report.rows if row.device_name == closed]
    assert {row.runtime for row in remote} == {"litert"}
    assert all(row.runtime != "keras" for row in remote + failed)  # the reference stays home
    for row in remote:
        twin = local[(row.artifact, row.runtime)]
        assert row.ok and twin.ok, (row.error, twin.error)
        # Identical outputs, judged against the host's reference: identical figures.
        assert (row.agreement, row.max_abs_diff, row.accuracy) == (
            twin.agreement,
            twin.max_abs_diff,
            twin.accuracy,
        )
        assert row.device["python"] and row.device["versions"]
        assert row.key == (row.artifact, row.runtime, row.device_name)
    assert len(failed) == len(remote)
    assert all(r.status == "failed" and "Connection refused" in r.error for r in failed)
    data = json.loads((device_out / "report" / "report.json").read_text())
    assert {row["device"]["name"] for row in data["rows"]} == {
        "local",
        str(_parsed(loopback)),
        closed,
    }
    assert list(tmp_path.glob("toolkit-agent-*")) == []


def _parsed(text: str):
    from toolkit.comparing.ssh import parse_device

    return parse_device(text)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_compare_leaves_nothing_on_the_device(
    ssh_device, device_out, tmp_path, signal_name
):
    import os
    import shutil
    import signal
    import sys

    out = Path(shutil.copytree(device_out, tmp_path / "out"))  # compare writes OUT/report
    device_tmp = tmp_path / "device"
    device_tmp.mkdir()
    command = [sys.executable, "-m", "toolkit", "compare", "--out", str(out)]
    command += ["--runtime", "litert", "--runs", "10000000", "--max-seconds", "60", "--no-figures"]
    command += ["--device", ssh_device.url(tmpdir=str(device_tmp))]
    command += ["--ssh-config", str(ssh_device.config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(device_tmp.glob("toolkit-agent-*/worker.pid")):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        time.sleep(0.5)  # the row is timing on the device
        os.kill(process.pid, getattr(signal, signal_name))
        assert process.wait(30) == ExitCode.INTERRUPTED
    finally:
        if process.poll() is None:
            process.kill()
    _assert_emptied(device_tmp)
