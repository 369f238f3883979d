"""Validation: every artifact's outputs judged against the Keras reference's, by its
tolerance, before anything is committed."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from toolkit.arrays import count
from toolkit.errors import ExitCode, ToolkitError
from toolkit.exporters import ExportVariant, Tolerance
from toolkit.exporting.model_io import (
    ModelIO,
    judge_outputs,
    reference_accuracies,
    summary_figures,
    tolerance_failures,
)
from toolkit.process import quiet_stderr
from toolkit.results import finite_or_none
from toolkit.runners import RUNNERS

VALIDATION_IMAGES = 1000


@dataclass(frozen=True)
class Judgement:
    """An artifact loaded in its runtime: its I/O, the comparator's figures and what missed."""

    figures: dict
    problems: list[str]
    inputs: list[dict]
    outputs: list[dict]


@dataclass(frozen=True)
class Validator:
    """Judges artifacts against the reference on the validation inputs, with the comparator
    compare uses, every output on its own kind and held to the variant's tolerance;
    `min_agreement` and `max_accuracy_drop` are the user's bounds for the variants judged by
    class agreement (the int8 ones)."""

    inputs: object  # one array, or arrays by input name
    reference: dict  # the Keras outputs by output name
    labels: dict  # labels by classifier output name
    io: ModelIO
    enabled: bool = True
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None

    def tolerance(self, variant: ExportVariant) -> Tolerance:
        bounds = variant.tolerance
        if bounds.min_agreement is None:
            return bounds
        if self.min_agreement is not None:
            bounds = replace(bounds, min_agreement=self.min_agreement)
        return replace(bounds, max_accuracy_drop=self.max_accuracy_drop)

    @property
    def count(self) -> int:
        return count(self.inputs)

    def judge(self, variant: ExportVariant, path: Path) -> Judgement:
        if variant.runtime is None:
            return Judgement({}, [], [], [])
        with quiet_stderr(), RUNNERS[variant.runtime](path) as runner:
            inputs_detail, outputs_detail = runner.io_details()
            if not self.enabled:
                return Judgement({}, [], inputs_detail, outputs_detail)
            outputs = runner.predict(self.inputs)
        tolerance = self.tolerance(variant)
        try:
            judged = judge_outputs(outputs, self.reference, self.io, self.labels)
        except ValueError as exc:  # NaN, infinity, a wrong shape or a missing output
            return Judgement({}, [str(exc)], inputs_detail, outputs_detail)
        figures = {
            "images": self.count,
            **summary_figures(judged, self.io),
            "tolerance": tolerance.to_json(),
        }
        accuracies = reference_accuracies(self.reference, self.labels)
        problems = tolerance_failures(tolerance, judged, accuracies)
        return Judgement(finite_or_none(figures), problems, inputs_detail, outputs_detail)


def validation_failure(variant_filename: str, count: int, problems: list[str]) -> ToolkitError:
    return ToolkitError(
        f"{variant_filename}: validation against the Keras reference failed on {count} inputs: "
        f"{'; '.join(problems)} (use --no-validate to keep it)",
        ExitCode.CONVERSION,
    )


# TensorFlow's own patterns (tensorflow/python/framework/ops.py): the model's name opens a root
# name scope when traced, each layer's a nested one.
_ROOT_SCOPE = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")


_NESTED_SCOPE = re.compile(r"[A-Za-z0-9_.\\/>-]*")


def check_layer_names(model, path: Path) -> None:
    """Names TensorFlow cannot trace ("$", "<", a space) are refused naming the layer. Renaming
    them for the trace would not do: the Keras copy, loaded as it is, fails the same way."""
    pending = [(model, _ROOT_SCOPE)]
    while pending:
        layer, pattern = pending.pop()
        if not pattern.fullmatch(layer.name):
            raise ToolkitError(
                f"{path}: layer {layer.name!r} has a name TensorFlow refuses (letters, digits and "
                "_ . - / > \\ only): rename it and save the model again",
                ExitCode.ARTIFACT,
            )
        pending += [(inner, _NESTED_SCOPE) for inner in getattr(layer, "layers", ())]


def judged_metric(figures: dict) -> str:
    """The figure the tolerance judged a mixed model by: class agreement for a classifier, SNR
    for any other output."""
    if figures.get("agreement") is not None:
        return f"agreement {figures['agreement']:.4f}"
    if figures.get("snr_db") is not None:
        return f"SNR {figures['snr_db']:.1f} dB"
    return "within its tolerance"


def judged_figure(figures: dict) -> float:
    """The figure `judged_metric` names as one number, higher being closer to the reference
    (minus infinity for a file that was not judged)."""
    for key in ("agreement", "snr_db"):
        if figures.get(key) is not None:
            return float(figures[key])
    if figures.get("max_abs_diff") is not None:
        return -float(figures["max_abs_diff"])
    return float("-inf")
