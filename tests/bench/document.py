"""bench.md, readable on its own, and bench.png: the measurements in `bench` as people read them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.bench.latency import printed_median
from tests.bench.summary import Ratio, format_value, verdict
from toolkit.figures import pyplot, save_figure
from toolkit.reporting import human_size


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _us(ms: float | None) -> str:
    return "–" if ms is None else f"{1000 * ms:.2f}"


def header(bench: dict) -> str:
    settings = bench["settings"]
    return (
        "# toolkit benchmark\n\n"
        "Every figure is a ratio between two things measured in this one run on this one machine; "
        f"short runs are repeated ({settings['reps']}x, training {settings['train_reps']}x, "
        "in turns A B A B so drift hits both sides) and their medians quoted.\n\n"
        f"- command: `{bench['command']}`\n"
        f"- started {bench['created']}, took {bench['total_seconds'] / 60:.1f} min\n"
        f"- runtime threads: {settings['threads']}; machine and versions at the end\n\n"
        "![training time, LiteRT latency, GFLOP/s, int8 speedups](bench.png)"
    )


def summary(ratios: list[Ratio]) -> str:
    rows = [
        [f"`{r.name}`", format_value(r), r.goal, verdict(r), r.meaning, r.detail] for r in ratios
    ]
    table = md_table(["ratio", "measured", "goal", "result", "what it divides", "detail"], rows)
    return "## Summary\n\n" + table + "\n\n`–`: the issue sets no goal; reported as measured."


def training(result: dict) -> str:
    tutorial, toolkit = result["tutorial"], result["toolkit"]
    rows = [
        [
            rep + 1,
            f"{a['seconds']:.1f}",
            f"{100 * a['test_accuracy']:.2f}",
            f"{b['seconds']:.1f}",
            f"{100 * b['test_accuracy']:.2f}",
        ]
        for rep, (a, b) in enumerate(zip(tutorial, toolkit, strict=True))
    ]
    seconds, accuracy = result["median_seconds"], result["median_accuracy"]
    rows.append(
        [
            "**median**",
            f"{seconds['tutorial']:.1f}",
            f"{100 * accuracy['tutorial']:.2f}",
            f"{seconds['toolkit']:.1f}",
            f"{100 * accuracy['toolkit']:.2f}",
        ]
    )
    headers = ["rep", "tutorial s", "tutorial acc %", "toolkit s", "toolkit acc %"]
    setting = result.get("tutorial_onednn_setting")
    onednn = "unset" if setting is None else f"={setting}"
    return (
        "## 1. Training: the tutorial script against `toolkit train`\n\n"
        "Both are whole processes timed by wall clock: interpreter start, TensorFlow import, "
        "dataset load, 10 epochs at batch 32, test evaluation (toolkit also saves the model, "
        "history and plots). The tutorial is `tests/bench/tutorial.py`, the tutorial's code as "
        "written (Keras 3 warns that `input_shape` is deprecated but runs it, so it stays), "
        "run from a scratch folder in the caller's environment with a private "
        "`KERAS_HOME` whose `datasets/fashion-mnist/` holds the four .gz files (no download; "
        "`~/.keras` untouched); its accuracy is the `Test accuracy:` it prints. toolkit is "
        "`toolkit train --out OUT --epochs 10 --batch-size 32`; its accuracy is "
        "`training/metrics.json`'s `test_accuracy`. The last toolkit run's model is the one "
        "exported and compared below. TensorFlow settings differ as shipped: the tutorial runs "
        f"with `TF_ENABLE_ONEDNN_OPTS` {onednn} (oneDNN on by default), while toolkit turns oneDNN "
        "off for itself and trains with op determinism, one XLA-compiled program per epoch.\n\n"
        + md_table(headers, rows)
        + f"\n\n**train_speedup = {result['speedup']:.2f}x** (goal >= 3x); accuracy "
        f"{result['accuracy_delta_pts']:+.2f} pt against the tutorial (goal: within 0.5 pt). "
        "The tutorial is unseeded, so its accuracy varies from run to run; toolkit's rep N uses "
        "`--seed N`, so both medians are over as many draws."
    )


def latency(rows: list[dict], settings: dict) -> str:
    table = md_table(
        [
            "artifact",
            "toolkit p50 µs",
            "bare p50 µs",
            "tool median µs",
            "tool prints",
            "bare_invoke_ratio",
            "litert_tool_ratio",
        ],
        [
            [
                r["artifact"],
                _us(r["toolkit_p50_ms"]),
                _us(r["bare_p50_ms"]),
                _us(r["tool_median_ms"]),
                printed_median(r),
                f"{r['bare_invoke_ratio']:.3f}",
                f"{r['litert_tool_ratio']:.3f}",
            ]
            for r in rows
        ],
    )
    return (
        "## 2. LiteRT batch-1 latency: toolkit's harness, a bare loop, LiteRT's own tool\n\n"
        "- **toolkit**: `toolkit.evaluate.measure`, the function `toolkit compare` runs "
        f"({settings['warmup']} warm-up calls, then {settings['runs']} timed calls of "
        "`LiteRTRunner.bind`'s bare call, `time_calls` with its deadline check).\n"
        "- **bare**: right after it in the same worker process, `LiteRTRunner.bind` sets the "
        "input once and a plain `for` loop times `interpreter.invoke()` with `perf_counter_ns`, "
        "same warm-up and count. Goal: toolkit within 10% of it.\n"
        "- **tool**: `python -m ai_edge_litert.tools.benchmark_litert_model --model=FILE "
        f"--num_threads={settings['threads']} --num_runs={settings['runs']} "
        f"--warmup_runs={settings['warmup']}`, shipped in ai-edge-litert 2.3 (a Python port of "
        "the C++ tool; it has no `--enable_op_profiling`). It times "
        "`CompiledModel.run_by_name` (LiteRT's newer API) rather than `Interpreter.invoke`, "
        "and rounds every time to 0.01 ms, coarser than one call here (column *tool prints*). "
        "The bench runs the same tool with its JSON rounding switched off "
        "(`tests/bench/litert_tool.py`) and divides by that full-precision median. "
        "Goal: toolkit never above it.\n\n"
        "Worker and tool run in turns; each column is the median of the per-rep p50s. This is "
        "its own measurement, so its toolkit p50 can differ a little from compare's in part 4."
        "\n\n" + table
    )


def gemm(result: dict) -> str:
    g = result["gemm"]
    blas = g["openblas"]
    rows = [
        [a["artifact"], f"{a['throughput_ips']:,.0f}", f"{a['gflops']:.1f}", f"{a['fraction']:.3f}"]
        for a in sorted(result["artifacts"], key=lambda a: -a["gflops"])
    ]
    return (
        "## 3. Throughput against numpy's float32 GEMM\n\n"
        f"FLOPs per image = 2 x multiply-accumulates of the Dense/Conv layers of `model.keras` "
        f"= **{result['flops_per_image']:,}**. Reference: `np.matmul` of two {g['size']}x"
        f"{g['size']} float32 matrices in its own process with {g['threads']} BLAS thread(s) "
        f"(limited by {g['limited_by']}; "
        f"OpenBLAS reports core `{blas.get('core', '?')}`, {blas.get('threads', '?')} thread(s); "
        f"`OPENBLAS_CORETYPE`={g['OPENBLAS_CORETYPE'] or 'unset'}), run {g['runs']}x in turns "
        f"with the compare runs, median of all {len(g['gflops_reps'])} products: "
        f"**{g['gflops']:.1f} GFLOP/s**. Throughput is compare's "
        "batch test (median over the compare reps). int8 artifacts do the same operations in "
        "8-bit integers, so their fraction of a float32 rate can exceed 1.\n\n"
        + md_table(["artifact", "images/s", "GFLOP/s", "fraction of GEMM"], rows)
    )


def int8(comparisons: list[dict]) -> str:
    rows = [
        [
            c["runtime"],
            f"{c['artifact']} vs {c['float32']}",
            f"{_us(c['p50_ms'][0])} → {_us(c['p50_ms'][1])}",
            f"{c['latency_speedup']:.2f}x",
            f"{c['throughput_ips'][0]:,.0f} → {c['throughput_ips'][1]:,.0f}",
            f"{c['throughput_speedup']:.2f}x",
            f"{human_size(c['size_bytes'][0])} → {human_size(c['size_bytes'][1])}",
            f"{c['size_ratio']:.3f}",
            f"{c['accuracy_delta_pts']:+.2f}",
        ]
        for c in comparisons
    ]
    headers = [
        "runtime",
        "int8 vs float32",
        "p50 µs",
        "int8_speedup (latency)",
        "images/s",
        "int8_speedup (throughput)",
        "size",
        "int8_size_ratio",
        "accuracy Δ pt",
    ]
    explained = [explanation(c, what, e) for c in comparisons for what, e in c["evidence"].items()]
    return "\n\n".join(
        [
            "## 4. int8 against float32, per runtime\n\nLatency is batch 1, throughput compare's "
            "batch test, both medians over the compare reps; a speedup below 1 means int8 is "
            "slower.\n\n" + md_table(headers, rows)
        ]
        + (explained or ["int8 is faster than float32 everywhere here."])
    )


def explanation(comparison: dict, what: str, evidence: dict) -> str:
    title = f"### Why {comparison['artifact']} is slower than {comparison['float32']} ({what})"
    if "profiles" in evidence:
        return title + "\n\n" + ort_profile_text(comparison, evidence)
    ops = evidence["ops"]
    lines = [f"- `{name}`: {', '.join(names)}" for name, names in ops.items()]
    return (
        title + "\n\nOps as LiteRT runs them (structure only: the Python LiteRT package ships no "
        "op profiler):\n\n" + "\n".join(lines)
    )


def ort_profile_text(comparison: dict, evidence: dict) -> str:
    base, quantized = (
        evidence["profiles"][n] for n in (comparison["float32"], comparison["artifact"])
    )
    ops = sorted(set(base["ops"]) | set(quantized["ops"]))

    def cells(profile, op):
        entry = profile["ops"].get(op)
        return (
            ["–", "–"]
            if entry is None
            else [f"{entry['kernels_per_call']:.0f}", f"{entry['us_per_call']:.2f}"]
        )

    rows = [[op, *cells(base, op), *cells(quantized, op)] for op in ops]
    rows.append(
        [
            "**all kernels**",
            f"{base['kernels_per_call']:.0f}",
            f"{base['kernel_us']:.2f}",
            f"{quantized['kernels_per_call']:.0f}",
            f"{quantized['kernel_us']:.2f}",
        ]
    )
    rows.append(
        [
            "**whole call (model_run)**",
            "",
            f"{base['model_run_us']:.2f}",
            "",
            f"{quantized['model_run_us']:.2f}",
        ]
    )
    return (
        f"ONNX Runtime's profiler (`SessionOptions.enable_profiling`) on the call compare times "
        f"(`OnnxRuntimeRunner.bind`, batch {evidence['batch']}, {quantized['calls']} calls "
        "each). The profiler adds its own cost to every kernel, so its absolute times run above "
        "the unprofiled p50; the split is what counts.\n\n"
        + md_table(
            ["op", "float32 kernels/call", "float32 µs/call", "int8 kernels/call", "int8 µs/call"],
            rows,
        )
        + "\n\n"
        + profile_finding(base, quantized, evidence["batch"])
    )


def profile_finding(base: dict, quantized: dict, batch: int) -> str:
    """The sentences the profile supports: kernels launched, conversions against products."""
    saved = base["product_us"] - quantized["product_us"]
    share = quantized["qdq_us"] / quantized["kernel_us"]
    text = (
        f"The int8 graph launches {quantized['kernels_per_call']:.0f} kernels per call against "
        f"{base['kernels_per_call']:.0f} for the same two matrix products: "
        f"{quantized['qdq_kernels_per_call']:.0f} of them QuantizeLinear/DequantizeLinear, "
        f"taking {quantized['qdq_us']:.2f} µs ({100 * share:.0f}%) of its "
        f"{quantized['kernel_us']:.2f} µs of profiled kernel time. Its matrix products take "
        f"{quantized['product_us']:.2f} µs against {base['product_us']:.2f} µs in float32 "
        f"(saved: {saved:+.2f} µs)."
    )
    if quantized["qdq_us"] > saved:
        text += (
            " The conversions cost more than the 8-bit products save, so at batch "
            f"{batch} int8 is slower."
        )
    return text


def pipeline(result: dict) -> str:
    rows = [
        [rep + 1, f"{e:.1f}", f"{c:.1f}"]
        for rep, (e, c) in enumerate(
            zip(result["export_seconds"], result["compare_seconds"], strict=True)
        )
    ]
    rows.append(
        [
            "**median**",
            f"{result['median_export_seconds']:.1f}",
            f"{result['median_compare_seconds']:.1f}",
        ]
    )
    artifacts = ", ".join(r["artifact"] for r in result["report"]["rows"])
    return (
        "## 5. Export and compare wall times\n\n"
        "`toolkit export --out OUT` (default artifact set, each validated) and `toolkit compare "
        "--out OUT --threads N` as whole processes on the trained OUT, in turns. Artifacts: "
        f"{artifacts}.\n\n" + md_table(["rep", "export s", "compare s"], rows)
    )


def machine(bench: dict) -> str:
    env = bench["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    load = bench["load_average"]
    return (
        "## Machine and versions\n\n"
        f"- CPU: {env['cpu']}, {env['cores']} cores; {env['platform']}; Python {env['python']}\n"
        f"- load average (1 min) at start {load['start']:.2f}, at end {load['end']:.2f} "
        "(a shared machine: other work competes for the same cores)\n"
        f"- {versions}"
    )


def bench_markdown(bench: dict, ratios: list[Ratio]) -> str:
    sections = [
        header(bench),
        summary(ratios),
        training(bench["training"]),
        latency(bench["litert"], bench["settings"]),
        gemm(bench["gemm"]),
        int8(bench["int8"]),
        pipeline(bench["pipeline"]),
        machine(bench),
    ]
    return "\n\n".join(sections) + "\n"


# --- bench.png ------------------------------------------------------------------------------------


def _training_panel(ax, result: dict) -> None:
    names = ["tutorial", "toolkit"]
    ax.bar(names, [result["median_seconds"][n] for n in names], color=["tab:gray", "tab:blue"])
    for i, name in enumerate(names):
        seconds = [run["seconds"] for run in result[name]]
        ax.plot([i] * len(seconds), seconds, "k.", alpha=0.6)
    ax.set(title=f"1. Training wall time ({result['speedup']:.2f}x)", ylabel="s (median, reps)")


def _grouped_bars(ax, labels: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / len(series)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.legend(fontsize=8)


def _latency_panel(ax, rows: list[dict]) -> None:
    keys = {
        "toolkit": "toolkit_p50_ms",
        "bare loop": "bare_p50_ms",
        "LiteRT tool": "tool_median_ms",
    }
    series = {name: [1000 * r[key] for r in rows] for name, key in keys.items()}
    _grouped_bars(ax, [r["artifact"] for r in rows], series)
    ax.set(title="2. LiteRT batch-1 p50", ylabel="µs")


def _gemm_panel(ax, result: dict) -> None:
    artifacts = sorted(result["artifacts"], key=lambda a: -a["gflops"])
    ax.bar([a["artifact"] for a in artifacts], [a["gflops"] for a in artifacts])
    ax.axhline(
        result["gemm"]["gflops"], color="tab:red", linestyle="--", label="numpy float32 GEMM"
    )
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.set(title="3. Throughput x FLOPs/image", ylabel="GFLOP/s")
    ax.legend(fontsize=8)


def _int8_panel(ax, comparisons: list[dict]) -> None:
    series = {
        "latency": [c["latency_speedup"] for c in comparisons],
        "throughput": [c["throughput_speedup"] for c in comparisons],
    }
    _grouped_bars(ax, [c["artifact"] for c in comparisons], series)
    ax.axhline(1, color="k", linewidth=0.8)
    ax.set(title="4. int8 speedup over float32 (same runtime)", ylabel="x")


def plot_bench(bench: dict, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _training_panel(axes[0, 0], bench["training"])
    _latency_panel(axes[0, 1], bench["litert"])
    _gemm_panel(axes[1, 0], bench["gemm"])
    _int8_panel(axes[1, 1], bench["int8"])
    fig.tight_layout()
    return save_figure(fig, path)
