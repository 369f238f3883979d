"""The reference .keras file itself, copied into the output folder."""

import shutil

from toolkit.exporters.base import ExportVariant, Tolerance


def export_keras(model, path, context):
    shutil.copyfile(context.source, path)


VARIANTS = (
    # A byte copy of the reference, run by the Keras runner at its own batch size and thread
    # count, not the reference's: TensorFlow picks kernels by both, so sums are taken in another
    # order and the rounding grows with depth. The float32 converters' bound holds for deep
    # models; a wrong file misses it by far more.
    ExportVariant(
        "keras", "float32", "model.keras", "keras", Tolerance(max_abs_diff=1e-4), export_keras
    ),
)
