"""The reference .keras file itself, copied into the output folder."""

import shutil

from toolkit.exporters.base import ExportVariant, Tolerance


def export_keras(model, path, context):
    shutil.copyfile(context.source, path)


VARIANTS = (
    # A byte copy of the reference; only batch-size-dependent summation order differs (~1e-6).
    ExportVariant(
        "keras", "float32", "model.keras", "keras", Tolerance(max_abs_diff=1e-5), export_keras
    ),
)
