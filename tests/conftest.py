"""Shared fixtures: the real dataset and a tiny model trained and exported once per test run
(shared by the pytest-xdist workers)."""

from collections.abc import Callable
from pathlib import Path

import pytest

from toolkit.process import import_tensorflow

TINY = {"limit": 2000, "epochs": 2}
# The session's folders built once for every worker (`built_once`): a worker that asks while
# another builds them waits.
SHARED_BUILDS = {"trained_dir", "exported_dir"}


# Seconds each of the longest modules took in `make test` (2 workers, 2 cores, AVX-512), for
# the order below; any other module counts 0.2 s a test. Stale figures only cost balance.
MODULE_SECONDS = {
    "tests/test_robustness.py": 110,
    "tests/test_any_model.py": 60,
    "tests/test_reliability.py": 55,
    "tests/test_multi_io_heads.py": 40,
    "tests/test_model.py": 30,
    "tests/test_api.py": 30,
    "tests/test_evaluate.py": 25,
    "tests/test_device_ssh.py": 25,
    "tests/test_multi_io.py": 25,
    "tests/test_mixed_precision.py": 20,
    "tests/test_report.py": 15,
    "tests/test_exporting.py": 15,
    "tests/test_quantization.py": 15,
    "tests/test_multi_io_single.py": 10,
    "tests/test_init.py": 10,
}


def pytest_collection_modifyitems(config, items):
    """Orders the modules for `make test` (pytest-xdist hands whole modules to its workers in
    this order, with --no-loadscope-reorder): longest first, so that no long one starts last,
    except that the second is the longest module that needs neither shared folder: its worker
    has work while the first worker builds them (`built_once`), instead of waiting."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)

    def seconds(name):
        return MODULE_SECONDS.get(name, 0.2 * len(modules[name]))

    def needs_shared(name):
        fixtures = (set(getattr(item, "fixturenames", ())) for item in modules[name])
        return any(SHARED_BUILDS & names for names in fixtures)

    ordered = sorted(modules, key=seconds, reverse=True)
    free = [name for name in ordered if not needs_shared(name)]
    if free and ordered[0] != free[0]:
        ordered.remove(free[0])
        ordered.insert(1, free[0])
    items[:] = [item for name in ordered for item in modules[name]]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After each test, its garbage is collected and what is still alive frozen: Python's
    automatic full collections scan every object not frozen, and each one over the Keras
    models, graphs and fixtures a worker accumulates was slow (README, Performance). Frozen
    objects are never collected: an object alive now that becomes cyclic garbage later stays
    (a module fixture's model), which a test process can afford."""
    import gc

    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def dataset():
    from toolkit.data import load_dataset

    return load_dataset()


def run_root(tmp_path_factory) -> Path:
    """The test run's own folder, shared by the pytest-xdist workers."""
    import os

    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def started_once(root: Path, name: str, start: Callable[[], None]) -> None:
    """Calls `start` once per test run, whichever worker comes first."""
    import fcntl
    import os

    with open(root / f"{name}.started", "a") as marker:
        fcntl.flock(marker, fcntl.LOCK_EX)
        if os.fstat(marker.fileno()).st_size == 0:
            start()
            marker.write("started\n")


@pytest.fixture(scope="session", autouse=True)
def cluster_scenarios_started(request, tmp_path_factory) -> Path:
    """The Ray cluster's scenarios (tests/cluster_scenarios.py) started once per run, in the
    background, as soon as a worker starts, when any selected test needs them: they wait on
    Ray much of their time, which the other tests use."""
    from tests.cluster_scenarios import can_run, in_background

    root = run_root(tmp_path_factory)
    folder = root / "cluster-scenarios"
    if any(item.get_closest_marker("ray") for item in request.session.items) and can_run():
        started_once(root, "cluster-scenarios", lambda: in_background(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)
def tensorflow_imported(cluster_scenarios_started) -> None:
    """TensorFlow imported as toolkit imports it (frozen: `import_frozen`) before any test
    imports Keras on its own, so that no collection ever scans its objects (after the Ray
    scenarios have started: they run beside everything)."""
    import_tensorflow()


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None], copy_to: Path) -> Path:
    """`copy_to`, a private copy of a folder `build` fills once per test run: under pytest-xdist
    the first worker to ask builds it under a file lock, the others wait and copy its result.

    Each worker keeps its own copy, so nothing one worker's commands write (a lock file, a
    report) is seen by another's; a build that fails leaves nothing, and the next asker retries.
    """
    import fcntl
    import os
    import shutil

    root = run_root(tmp_path_factory)
    shared = root / f"{name}.shared"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on an error
        if not shared.is_dir():
            staging = root / f"{name}.building-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            build(staging / "out")
            staging.rename(shared)
    shutil.copytree(shared / "out", copy_to, symlinks=True, dirs_exist_ok=True)
    return copy_to


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, dataset) -> Path:
    """An output folder holding a tiny trained tutorial model and its training outputs."""

    def build(out: Path) -> None:
        from toolkit.model import TrainConfig, save_training_outputs, train

        import_tensorflow()
        result = train(dataset, TrainConfig(**TINY), out / "training" / "checkpoint")
        save_training_outputs(out, dataset, result, figures=False)  # test_cli draws them

    return built_once(tmp_path_factory, "trained", build, tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, trained_dir) -> Path:
    """The tiny model exported to every registered format, with its manifest."""

    def build(out: Path) -> None:
        import shutil

        from toolkit.exporting.pipeline import export_artifacts
        from toolkit.options import ExportOptions

        shutil.copytree(trained_dir, out)
        export_artifacts(ExportOptions(out=out))

    copy_to = tmp_path_factory.mktemp("exported") / "out"
    return built_once(tmp_path_factory, "exported", build, copy_to)


@pytest.fixture
def exported_copy(exported_dir, tmp_path) -> Path:
    """A private copy of the exported folder, for tests that change or break files in it."""
    import shutil

    return Path(shutil.copytree(exported_dir, tmp_path / "exported_copy"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """An untrained 8x8 -> 4-class model, its export context and inputs, for unit tests of each
    exporter and runner. Seeded: the same weights and the same conversions every run."""
    from types import SimpleNamespace

    import keras
    import numpy as np

    from toolkit.exporters.base import ExportContext

    import_tensorflow()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(4, activation="softmax", name="probabilities"),
        ]
    )
    folder = tmp_path_factory.mktemp("tiny")
    model.save(folder / "model.keras")
    inputs = np.random.default_rng(0).uniform(0, 1, (300, 8, 8)).astype(np.float32)
    context = ExportContext(model, folder / "model.keras", inputs[:200], 17, folder / ".build")
    return SimpleNamespace(
        model=model,
        context=context,
        folder=folder,
        inputs=inputs,
        reference=model.predict(inputs, verbose=0),
    )


def tiny_artifact(tiny, variant) -> Path:
    """The tiny model's file for an export variant, written on first use."""
    path = tiny.folder / variant.filename
    if not path.exists():
        variant.write(tiny.model, path, tiny.context)
    return path


def round_trip(tiny, variant):
    """The variant's file reloaded in its runtime and judged against the Keras outputs by the
    comparator export and compare use."""
    from toolkit.arrays import only
    from toolkit.metrics import compare_outputs
    from toolkit.process import quiet_stderr
    from toolkit.runners import RUNNERS

    with quiet_stderr(), RUNNERS[variant.runtime](tiny_artifact(tiny, variant)) as runner:
        outputs = only(runner.predict(tiny.inputs))
    assert outputs.shape == tiny.reference.shape and outputs.dtype == "float32"
    return compare_outputs(outputs, tiny.reference)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained Flatten -> Dense(16) -> Dense(10) model as every TFLite variant and as ONNX
    float32: files for runtime tests that compare runtimes with each other, not accuracy."""
    import numpy as np

    from toolkit.exporters import EXPORTERS, ExportContext

    keras = import_tensorflow().keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    out = tmp_path_factory.mktemp("tiny_model")
    calibration = np.random.default_rng(0).random((32, 28, 28), dtype=np.float32)
    model.save(out / "model.keras")
    context = ExportContext(model, out / "model.keras", calibration, 17, out / ".build")
    onnx_float32 = [v for v in EXPORTERS["onnx"] if v.variant == "float32"]
    for variant in [*EXPORTERS["tflite"], *onnx_float32]:
        variant.write(model, out / variant.filename, context)
    return out


@pytest.fixture(scope="session")
def uncommon_ops_tflite(tmp_path_factory) -> Path:
    """A .tflite file made of Flex (select TensorFlow) ops, which TFLite Micro, the GPU delegate
    and OpenVINO's TFLite reader all lack."""
    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32)])
    def serve(x):
        return tf.math.top_k(tf.math.cos(x), k=2).values

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], serve
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path_factory.mktemp("uncommon_ops") / "uncommon_ops.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="session")
def ssh_device(tmp_path_factory):
    """A real sshd on a loopback port with a device venv (numpy, ai-edge-litert, onnxruntime,
    no TensorFlow): see tests/ssh_device.py."""
    from tests.ssh_device import device_venv, sshd_available, start_sshd, stop_sshd

    if not sshd_available():
        pytest.skip("OpenSSH's sshd is not installed (make setup installs openssh-server)")
    device = start_sshd(tmp_path_factory.mktemp("sshd"), device_venv())
    yield device
    stop_sshd(device.process)
