"""TF SavedModel with a serving_default signature (TF Serving, TF.js and converters read it)."""

import shutil
from pathlib import Path

from toolkit.exporters.base import ExportVariant, Tolerance
from toolkit.formats.keras import serving_function


def write_savedmodel(model, path, serve=None) -> None:
    """Through Keras's ExportArchive: variables stay variables, so int8 calibration works (a
    plain tf.saved_model.save of a closure leaves READ_VARIABLE ops the quantizer refuses).
    `serve` is the model's serving_function; given without a signature, the archive takes its
    traced graph as it is instead of tracing it again."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = serve or serving_function(model)
    serve.get_concrete_function()  # traced once (a no-op when it already is)
    archive.add_endpoint("serving_default", serve)
    archive.write_out(str(path), verbose=False)


def shared_savedmodel(context, batch: int | None = None) -> Path:
    """The export's SavedModel every TF-based converter starts from: with a dynamic batch (the
    savedmodel artifact), or with a fixed `batch` for the TFLite files, each written once."""
    if batch is None:
        return context.shared_path(
            "savedmodel", lambda path: write_savedmodel(context.model, path, context.serving())
        )
    return context.shared_path(
        f"savedmodel_batch{batch}",
        lambda path: write_savedmodel(context.model, path, serving_function(context.model, batch)),
    )


def export_savedmodel(model, path, context):
    shutil.copytree(shared_savedmodel(context), path)


VARIANTS = (
    # Same TF kernels as the reference; only graph-level rewrites differ (seen: ~1e-7).
    ExportVariant(
        "savedmodel",
        "float32",
        "savedmodel",
        "tensorflow",
        Tolerance(max_abs_diff=1e-4),
        export_savedmodel,
    ),
)
