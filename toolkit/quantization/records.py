"""Per-tensor quantization error records, their ranking, and what is written for each artifact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

# Rounding to a uniform grid of step `scale` leaves an error of RMSE scale / sqrt(12): a tensor
# whose RMSE / scale is near this lost nothing but rounding.
ROUNDING_NOISE = 12**-0.5


# Calibration samples the per-layer error is measured on. Both debuggers keep every tensor of
# every sample, so memory grows with the count (README, Performance); 64 samples rank the layers
# the same way on the test models and the tutorial.
DEBUG_SAMPLES = 64


@dataclass(frozen=True)
class TensorError:
    """One quantized tensor's error against the float model, on the calibration sample."""

    layer: str  # the Keras layer that produced it ('' for none)
    tensor: str  # its name in the converted graph
    kind: str  # "activation" or "weight"
    op: str  # the op that produced (activation) or reads (weight) it: FULLY_CONNECTED, Gemm
    node: str  # the name that keeps it in float: TFLite denylisted_nodes, ONNX nodes_to_exclude
    metrics: dict[str, float]
    rank: int = 0  # 1 = the tensor whose quantization hurts most


@dataclass(frozen=True)
class LayerErrors:
    """Every quantized tensor of one int8 artifact, in graph order, and how they were ranked."""

    format: str  # "tflite" or "onnx"
    method: str  # the tool that measured them
    rank_metric: str  # the metric `rank` sorts by, largest first
    plot_metric: str  # the metric drawn per layer
    samples: int  # calibration images the error was measured on
    tensors: tuple[TensorError, ...]

    def ranked_layers(self) -> list[str]:
        """Keras layers, most damaging first: the order in which the search keeps them in float."""
        ranked = sorted((t for t in self.tensors if t.layer), key=lambda t: t.rank)
        return list(dict.fromkeys(t.layer for t in ranked))


def ranked(tensors: Sequence[TensorError], metric: str) -> tuple[TensorError, ...]:
    """The same tensors, graph order kept, with `rank` 1 for the largest `metric`."""
    order = sorted(range(len(tensors)), key=lambda i: -tensors[i].metrics[metric])
    ranks = {index: position + 1 for position, index in enumerate(order)}
    return tuple(replace(t, rank=ranks[i]) for i, t in enumerate(tensors))


def layer_errors_json(artifact: str, errors: LayerErrors) -> dict:
    """The content of `OUT/quantization/<artifact>.json`."""
    return {
        "artifact": artifact,
        "format": errors.format,
        "method": errors.method,
        "rank_metric": errors.rank_metric,
        "samples": errors.samples,
        "ranked_layers": errors.ranked_layers(),
        "tensors": [asdict(t) for t in errors.tensors],
    }


def worst_layers_message(errors: LayerErrors, count: int = 3) -> str:
    """One line naming the `count` worst layers with their figures, for an int8 that failed."""
    seen, parts = set(), []
    for tensor in sorted(errors.tensors, key=lambda t: t.rank):
        if not tensor.layer or tensor.layer in seen:
            continue
        seen.add(tensor.layer)
        figures = ", ".join(f"{k} {v:.3g}" for k, v in tensor.metrics.items())
        parts.append(f"{tensor.layer} ({figures})")
        if len(parts) == count:
            break
    return "worst layers: " + "; ".join(parts)


def layer_errors_figure(errors: LayerErrors, title: str):
    """One bar per quantized tensor in graph order, labelled with its Keras layer."""
    from toolkit.figures import literal_text, pyplot

    plt = pyplot()
    tensors = errors.tensors
    values = [t.metrics[errors.plot_metric] for t in tensors]
    labels = [
        literal_text(f"{t.layer or '?'} {t.op}" + (" weight" if t.kind == "weight" else ""))
        for t in tensors
    ]
    colours = {"activation": "tab:blue", "weight": "tab:orange"}
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(tensors)), 4))
    for kind, colour in colours.items():
        index = [i for i, t in enumerate(tensors) if t.kind == kind]
        if index:
            ax.bar(index, [values[i] for i in index], color=colour, label=kind)
    ax.set_xticks(range(len(tensors)), labels, rotation=60, ha="right", fontsize=7)
    if errors.plot_metric == "rmse_over_scale":
        ax.axhline(ROUNDING_NOISE, color="grey", linestyle="--", label="rounding noise only")
    ax.legend()
    ax.set(
        title=literal_text(title),
        ylabel=literal_text(errors.plot_metric),
        xlabel="quantized tensor, graph order",
    )
    ax.grid(True, axis="y", alpha=0.3)
    return fig
