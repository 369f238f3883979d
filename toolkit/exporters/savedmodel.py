"""TF SavedModel with a serving_default signature (TF Serving, TF.js and converters read it)."""

from toolkit.exporters.base import ExportVariant, Tolerance, serving_function


def export_savedmodel(model, path, context):
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = serving_function(model)
    archive.add_endpoint("serving_default", serve, serve.input_signature)
    archive.write_out(str(path), verbose=False)


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
