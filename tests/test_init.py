"""Package-level helpers: TensorFlow's import without the plotting stack Keras would pull in."""

import subprocess
import sys

import pytest


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_tensorflow_imports_without_matplotlib_which_still_imports_afterwards():
    seen = run_python(
        "import sys, toolkit\n"
        "toolkit.import_tensorflow()\n"
        "print('matplotlib' in sys.modules)\n"
        "import matplotlib.pyplot, keras\n"
        "print(matplotlib.pyplot.__name__, keras.__name__)\n"
    )
    assert seen == ["False", "matplotlib.pyplot", "keras"]


@pytest.mark.parametrize("first", ["import matplotlib.pyplot", ""])
def test_keras_galleries_keep_pyplot_only_where_it_was_imported_first(first):
    (gallery_plt,) = run_python(
        f"{first}\n"
        "import toolkit\n"
        "toolkit.import_tensorflow()\n"
        "from keras.src.visualization import plot_image_gallery\n"
        "print(plot_image_gallery.plt is not None)\n"
    )
    assert gallery_plt == str(bool(first))
