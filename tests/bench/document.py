"""bench.md, readable on its own: the measurements in `bench` as people read them."""

from __future__ import annotations

from tests.bench.cluster import cluster_markdown
from tests.bench.device import device_markdown
from tests.bench.gemm import GOALS
from tests.bench.latency import printed_median
from tests.bench.summary import Ratio, format_value, verdict
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


# metrics.json's `seconds` as the breakdown shows them: (key, label, what it is).
TRAINING_PARTS = [
    ("outside", "outside the library call", "interpreter start, CLI import, lock, exit"),
    ("tensorflow_import", "TensorFlow import", "`import tensorflow`, main thread"),
    ("dataset_wait", "dataset", "read and digested before the import (beside it, it slowed it)"),
    ("setup", "setup", "seeds, tensors, model build, optimizer"),
    ("training_loop", "training loop", "`train_seconds`: 10 epochs incl. XLA compilation"),
    ("evaluation", "evaluation", "test-set forward pass, metrics"),
    ("saving", "saving", "model.keras, history"),
    ("figures_wait", "figures: waited for", "drawn by two worker processes beside training"),
]


def training(result: dict) -> str:
    tutorial, toolkit = result["tutorial"], result["toolkit"]
    rows = [
        [
            rep + 1,
            f"{a['seconds']:.1f}",
            f"{100 * a['test_accuracy']:.2f}",
            f"{b['seconds']:.1f}",
            rep,
            f"{100 * b['test_accuracy']:.2f}",
        ]
        for rep, (a, b) in enumerate(zip(tutorial, toolkit, strict=True))
    ]
    seconds, accuracy = result["median_seconds"], result["accuracy"]
    rows.append(
        ["**median**", f"{seconds['tutorial']:.1f}", "", f"{seconds['toolkit']:.1f}", "", ""]
    )
    rows.append(
        [
            "**mean ± std**",
            "",
            f"{accuracy['tutorial']['mean']:.2f} ± {accuracy['tutorial']['std']:.2f}",
            "",
            "",
            f"{accuracy['toolkit']['mean']:.2f} ± {accuracy['toolkit']['std']:.2f}",
        ]
    )
    headers = ["turn", "tutorial s", "tutorial acc %", "toolkit s", "toolkit seed", "toolkit acc %"]
    setting = result.get("tutorial_onednn_setting")
    onednn = "unset" if setting is None else f"={setting}"
    interval = accuracy["difference_pts"]
    verdict_text = "pass" if accuracy["parity"] else "FAIL"
    return (
        "## 1. Training: the tutorial script against `toolkit train`\n\n"
        "Both are whole processes timed by wall clock: interpreter start, TensorFlow import, "
        "dataset load, 10 epochs at batch 32, test evaluation (toolkit also saves the model, "
        "history, metrics and five figures). The tutorial is `tests/bench/tutorial.py`, the "
        "tutorial's code as written (Keras 3 warns that `input_shape` is deprecated but runs "
        "it, so it stays), run from a scratch folder in the caller's environment with a private "
        "`KERAS_HOME` whose `datasets/fashion-mnist/` holds the four .gz files (no download; "
        "`~/.keras` untouched); its accuracy is the `Test accuracy:` it prints. toolkit is "
        "`toolkit train --out OUT --epochs 10 --batch-size 32 --seed N` in turn N; its accuracy "
        "is `training/metrics.json`'s `test_accuracy`. The two run in turns (A B A B), so drift "
        "on this shared machine hits both. The last toolkit run's model is the one exported and "
        "compared below. TensorFlow settings differ as shipped: the tutorial runs with "
        f"`TF_ENABLE_ONEDNN_OPTS` {onednn} (oneDNN on by default), while toolkit turns oneDNN "
        "off for itself and trains with op determinism, one XLA-compiled program per epoch.\n\n"
        + md_table(headers, rows)
        + f"\n\n**train_speedup = {result['speedup']:.2f}x** (median wall times; goal >= 4.5x)."
        "\n\n**Accuracy.** One run's accuracy is a draw from a spread, so the two sides are "
        "compared as samples: toolkit with seeds 0..N-1, the tutorial unseeded, Welch's 95% "
        "confidence interval of the difference of means (toolkit - tutorial, no equal-variance "
        f"assumption): **{interval['difference']:+.2f} pt, CI [{interval['low']:+.2f}, "
        f"{interval['high']:+.2f}] pt** (df {interval['df']:.1f}) — {verdict_text} (passes "
        f"when the interval contains 0 or lies within ±{accuracy['margin_pts']:g} pt).\n\n"
        + training_breakdown(result)
    )


def training_breakdown(result: dict) -> str:
    """Where `toolkit train`'s wall time goes: medians of the parts metrics.json records."""
    parts = result["median_parts"]
    rows = [[label, f"{parts[key]:.2f}", what] for key, label, what in TRAINING_PARTS]
    whole = result["median_seconds"]["toolkit"]
    rows.append(["**whole process** (median)", f"**{whole:.2f}**", ""])
    overhead = parts["overhead"]
    return (
        "### Where `toolkit train`'s time goes\n\n"
        "Medians over the toolkit turns of the parts `training/metrics.json` records under "
        "`seconds` (the parts' medians need not add up to the whole's median). *outside* is the "
        "process's wall time minus `in_process`, the library call's own clock.\n\n"
        + md_table(["part", "s", "what"], rows)
        + f"\n\nwhole - TensorFlow import - training loop = **{overhead:.2f} s** "
        f"(goal <= 1.5 s; median of the per-run values)."
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
        "- **toolkit**: `toolkit.comparing.worker.measure_job`, the function `toolkit compare` "
        "runs "
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
    peak = result["peak"]
    blas = ", ".join(
        f"{lib['internal_api']} {lib['version']} kernel `{lib['architecture']}`"
        for lib in peak["blas"]
    )
    pinned = ", ".join(f"`{k}`={v or 'unset'}" for k, v in peak["caller_pinning"].items())
    candidates = [
        [
            kind,
            name,
            f"{c['gflops']:.1f}",
            f"{c['median_gflops']:.1f}",
            ", ".join(f"{r:.0f}" for r in c["gflops_reps"]),
        ]
        for kind, pooled in peak["peaks"].items()
        for name, c in pooled["candidates"].items()
    ]
    rows = [
        [
            a["artifact"],
            a["precision"],
            f"{a['throughput_ips']:,.0f}",
            f"{a['gflops']:.1f}",
            f"{a['fraction']:.3f}",
            f"{GOALS[a['precision']]:g}",
        ]
        for a in sorted(result["artifacts"], key=lambda a: (a["precision"], -a["gflops"]))
    ]
    short = [a for a in result["artifacts"] if "evidence" in a]
    return "\n\n".join(
        [
            "## 3. Throughput against the machine's GEMM peak, per precision\n\n"
            f"FLOPs per image = 2 x multiply-accumulates of the Dense/Conv layers of `model.keras` "
            f"= **{result['flops_per_image']:,}** (for int8 artifacts the same count of integer "
            "operations). Throughput is compare's batch test at `--batch-size` (median over the "
            "compare reps).\n\n"
            f"**Peaks**, measured in their own process ({peak['threads']} thread(s), squares of "
            f"{', '.join(str(n) for n in peak['sizes'])}, run {peak['runs']}x in turns with "
            "compare; a candidate's rate is its best product, as noise only slows products "
            "down, so fractions of it are conservative) with `OPENBLAS_CORETYPE` and "
            "`OPENBLAS_L2_SIZE` removed "
            f"from that process's environment only (the caller had {pinned}), so OpenBLAS picks "
            f"its kernel for this CPU: {blas} (threadpoolctl). float32 peak: the fastest of "
            "numpy's `matmul` and ONNX Runtime's `MatMul` over the sizes; int8 peak: ONNX "
            "Runtime's `MatMulInteger` (uint8 x int8 -> int32), counted as 2 operations per "
            "multiply-add. ONNX Runtime's right matrix is an initializer, packed once as a "
            "model's weights are.\n\n"
            + md_table(["precision", "candidate", "best G op/s", "median", "all"], candidates)
            + f"\n\nfloat32 peak **{peak['peaks']['float32']['gflops']:.1f} GFLOP/s** "
            f"({peak['peaks']['float32']['source']}), int8 peak "
            f"**{peak['peaks']['int8']['gflops']:.1f} GOP/s** "
            f"({peak['peaks']['int8']['source']}).\n\n"
            + md_table(
                ["artifact", "precision", "images/s", "G op/s", "fraction of peak", "goal"], rows
            )
            + "\n\nGoal (the issue's): the best float32 artifact >= 0.5 of the float32 peak, "
            "the best int8 artifact >= 0.3 of the int8 peak."
        ]
        + [short_explanation(a, peak) for a in short]
    )


def short_explanation(artifact: dict, peak: dict) -> str:
    """What the profiler shows an artifact below its goal spends its time on."""
    title = (
        f"### Why `{artifact['artifact']}` reaches {artifact['fraction']:.2f} of the "
        f"{artifact['precision']} peak"
    )
    evidence = artifact["evidence"]
    if "ops" in evidence:
        return (
            title
            + "\n\nLiteRT's Python package has no op profiler; the ops it runs: "
            + ", ".join(f"`{op}`" for op in evidence["ops"])
            + "."
        )
    profile = evidence["profile"]
    rows = [
        [
            op,
            f"{entry['kernels_per_call']:.0f}",
            f"{entry['us_per_call']:.1f}",
            f"{100 * entry['us_per_call'] / profile['kernel_us']:.0f}%",
        ]
        for op, entry in profile["ops"].items()
    ]
    rows.append(["**all kernels**", "", f"{profile['kernel_us']:.1f}", "100%"])
    rows.append(["**whole call (model_run)**", "", f"{profile['model_run_us']:.1f}", ""])
    products = profile["product_us"] / profile["kernel_us"]
    peak_rate = peak["peaks"][artifact["precision"]]["gflops"]
    return (
        title
        + f"\n\nONNX Runtime's profiler on compare's throughput call (batch {evidence['batch']}, "
        f"{profile['calls']} calls; the profiler adds its own cost per kernel):\n\n"
        + md_table(["op", "kernels/call", "µs/call", "share of kernel time"], rows)
        + f"\n\nThe matrix-product kernels take {100 * products:.0f}% of the kernel time and "
        f"run at {profile['product_gflops']:.1f} G op/s inside themselves "
        f"({profile['product_gflops'] / peak_rate:.2f} of the peak); the other "
        f"{100 * (1 - products):.0f}% goes to the table's other ops."
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
    steps = ("export", "export_desktop", "export_previous", "compare", "compare_previous")
    turns = zip(*(result[f"{step}_seconds"] for step in steps), strict=True)
    rows = [[rep + 1, *(f"{s:.1f}" for s in seconds)] for rep, seconds in enumerate(turns)]
    rows.append(["**median**", *(f"{result[f'median_{step}_seconds']:.1f}" for step in steps)])
    artifacts = ", ".join(r["artifact"] for r in result["report"]["rows"])
    previous = result["previous_commit"]
    headers = ["rep", "export s (all)", "export s (8)", f"export s at {previous} (8)"]
    headers += ["compare s (8)", f"compare s at {previous} (8)"]
    return (
        "## 5. Export and compare wall times\n\n"
        "`toolkit export --out OUT` (every format, each validated) and `toolkit compare "
        "--out OUT --threads N` in the artifacts' own runtimes, as whole processes on the "
        f"trained OUT, in turns with the same two commands of commit {previous} (the toolkit "
        "before this round of issues, unpacked from git history) and today's export of the "
        f"same 8 desktop artifacts on a copy of the model. Compare's rows: {artifacts}.\n\n"
        + md_table(headers, rows)
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
        device_markdown(bench["device"]),
        cluster_markdown(bench["cluster"]),
        machine(bench),
    ]
    return "\n\n".join(sections) + "\n"
