"""compare's seam: a Job and a Measurement survive their file forms; malformed ones are refused."""

import io
import json
import zipfile

import numpy as np
import pytest

from toolkit.comparing.measurement import Job, Measurement, MeasureSettings
from toolkit.errors import ExitCode, ToolkitError


def measurement() -> Measurement:
    rng = np.random.default_rng(0)
    return Measurement(
        outputs={
            "probabilities": rng.random((7, 10), dtype=np.float32),
            "logits": rng.standard_normal((7, 3), dtype=np.float32),
        },
        latencies_ns=rng.integers(1_000, 9_000, 50, dtype=np.int64),
        throughput_ips=1234.5,
        load_ms=12.25,
        peak_rss_mb=321.0,
        extras={"arena_bytes": 4096, "settings": {"delegate": None}},
        machine={"hostname": "h", "cpu": "c", "cores": 2, "versions": {"numpy": "2"}},
    )


def test_a_measurement_round_trips_through_bytes_unchanged():
    sent = measurement()
    back = Measurement.from_bytes(sent.to_bytes())
    assert list(back.outputs) == ["probabilities", "logits"]  # the model's output order
    for name, array in sent.outputs.items():
        assert back.outputs[name].dtype == np.float32
        np.testing.assert_array_equal(back.outputs[name], array)
    np.testing.assert_array_equal(back.latencies_ns, sent.latencies_ns)
    assert back.latencies_ns.dtype == np.int64
    assert (back.throughput_ips, back.load_ms, back.peak_rss_mb) == (1234.5, 12.25, 321.0)
    assert back.extras == sent.extras and back.machine == sent.machine
    assert zipfile.ZipFile(io.BytesIO(sent.to_bytes())).testzip() is None  # a plain .npz


def test_a_job_round_trips_through_json():
    job = Job("model_int8.tflite", "ab" * 32, "litert", MeasureSettings(threads=2, runs=10))
    assert Job.from_json(json.loads(json.dumps(job.to_json()))) == job


def _rewritten(data: bytes, member: str, content: bytes) -> bytes:
    """`data` with one member's content replaced."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(
                info.filename, content if info.filename == member else source.read(info)
            )
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header(**changes) -> bytes:
    header = json.loads(
        zipfile.ZipFile(io.BytesIO(measurement().to_bytes())).read("measurement.json")
    )
    return json.dumps({**header, **changes}).encode()


@pytest.mark.parametrize(
    ("member", "content", "reason"),
    [
        ("output_0.npy", _npy(np.array([{"a": 1}], dtype=object)), "pickled"),
        ("output_0.npy", _npy(np.zeros((7, 10), np.float64)), "dtype float64"),
        ("latencies_ns.npy", _npy(np.array([-1], np.int64)), "latencies_ns"),
        ("measurement.json", _header(load_ms=float("nan")), "load_ms"),
        ("measurement.json", _header(machine=[]), "machine"),
        ("measurement.json", _header(outputs=["a"]), "members"),
        ("measurement.json", _header(version=99), "version 99"),
        ("measurement.json", b"{not json", "measurement"),
    ],
)
def test_a_malformed_measurement_is_refused_with_one_line(member, content, reason):
    bad = _rewritten(measurement().to_bytes(), member, content)
    with pytest.raises(ToolkitError) as error:
        Measurement.from_bytes(bad)
    assert error.value.code == ExitCode.ARTIFACT
    assert "\n" not in str(error.value)
    if reason != "pickled":
        assert reason in str(error.value)


@pytest.mark.parametrize("payload", [b"", b"not a zip at all", "a str, not bytes"])
def test_what_is_not_a_measurement_at_all_is_refused(payload):
    with pytest.raises(ToolkitError, match="not a usable measurement"):
        Measurement.from_bytes(payload)


def test_an_oversized_measurement_is_refused_before_reading():
    data = measurement().to_bytes()
    with pytest.raises(ToolkitError, match="more than the 1000"):
        Measurement.from_bytes(data, max_bytes=1000)
    # A small payload that unpacks past the cap (a zip bomb) is refused too.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("measurement.json", b" " * (1 << 20))
    with pytest.raises(ToolkitError, match="unpack to more than"):
        Measurement.from_bytes(buffer.getvalue(), max_bytes=64 << 10)
