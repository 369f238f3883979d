"""Package-level helpers: TensorFlow's import without the plotting stack Keras would pull in, and
frozen first imports."""

import subprocess
import sys

import pytest


def run_python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


# TensorFlow's first import, then what the tests below look at, in one process: each import of
# TensorFlow is the costly part, and each look leaves the next one's conditions as they were.
TENSORFLOW_FIRST = (
    "import gc, sys, toolkit.process\n"
    "toolkit.process.import_tensorflow()\n"
    "print('matplotlib' in sys.modules)\n"
    "first = gc.get_freeze_count()\n"
    "cycles = [[] for _ in range(10_000)]\n"
    "for c in cycles:\n"
    "    c.append(c)\n"
    "del cycles\n"
    "toolkit.process.import_tensorflow()\n"
    "print(first, gc.get_freeze_count())\n"
    "from keras.src.visualization import plot_image_gallery\n"
    "print(plot_image_gallery.plt is not None)\n"
    "import matplotlib.pyplot, keras\n"
    "print(matplotlib.pyplot.__name__, keras.__name__)\n"
)


@pytest.fixture(scope="module")
def tensorflow_first() -> dict[str, list[str]]:
    """What a process saw after importing TensorFlow through toolkit before anything else."""
    seen = run_python(TENSORFLOW_FIRST)
    return {
        "matplotlib": seen[:1],
        "freeze counts": seen[1:3],
        "gallery plt": seen[3:4],
        "imported after": seen[4:],
    }


def test_tensorflow_imports_without_matplotlib_which_still_imports_afterwards(tensorflow_first):
    assert tensorflow_first["matplotlib"] == ["False"]
    assert tensorflow_first["imported after"] == ["matplotlib.pyplot", "keras"]


@pytest.mark.parametrize("first", ["import matplotlib.pyplot", ""])
def test_keras_galleries_keep_pyplot_only_where_it_was_imported_first(first, tensorflow_first):
    if first:
        (gallery_plt,) = run_python(
            f"{first}\n"
            "import toolkit.process\n"
            "toolkit.process.import_tensorflow()\n"
            "from keras.src.visualization import plot_image_gallery\n"
            "print(plot_image_gallery.plt is not None)\n"
        )
    else:
        (gallery_plt,) = tensorflow_first["gallery plt"]
    assert gallery_plt == str(bool(first))


def test_import_frozen_pauses_collection_then_leaves_the_module_out_of_later_ones(tmp_path):
    """No collection runs during the import; afterwards its objects sit in the permanent
    generation (a full collection scans only what came later), and collection is on again."""
    (tmp_path / "many_objects.py").write_text("made = [[i] for i in range(200_000)]\n")
    frozen_count, collections_inside, enabled, in_generations = run_python(
        f"import gc, sys, toolkit.process\nsys.path.insert(0, {str(tmp_path)!r})\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "module = toolkit.process.import_frozen('many_objects')\n"
        "inside = len(runs)\n"
        "print(gc.get_freeze_count() >= 200_000, inside, gc.isenabled())\n"
        "tracked = {id(o) for o in gc.get_objects()}\n"
        "print(any(id(m) in tracked for m in module.made[::1000]))\n"
    )
    assert (frozen_count, collections_inside, enabled, in_generations) == (
        "True",
        "0",
        "True",
        "False",
    )


def test_tensorflow_import_is_frozen(tensorflow_first):
    first, _ = tensorflow_first["freeze counts"]
    assert int(first) > 100_000


def test_a_worker_imports_its_runtime_frozen(monkeypatch):
    """Compare's keras worker imports TensorFlow through `import keras`, the runner's module,
    before import_tensorflow is ever called: that import must be the frozen one."""
    import toolkit.process
    from toolkit.comparing.measurement import Job, MeasureSettings
    from toolkit.comparing.worker import measure_job
    from toolkit.runners import RUNNERS

    imported = []
    monkeypatch.setattr(toolkit.process, "import_frozen", imported.append)

    class Stop(Exception):
        pass

    class RuntimeRunner:
        module = "json"
        package = "numpy"

        def __init__(self, path, threads):
            raise Stop

    with pytest.raises(Stop):
        monkeypatch.setitem(RUNNERS, "json", RuntimeRunner)
        measure_job(Job("model.bin", "", "json", MeasureSettings()), "model.bin", None)
    assert imported == ["json"]


def test_only_the_first_tensorflow_import_freezes(tensorflow_first):
    """A later call must not freeze what is alive then: garbage cycles would never be freed."""
    first, later = tensorflow_first["freeze counts"]
    assert first == later
