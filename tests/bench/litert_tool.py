"""LiteRT's own benchmark tool, unchanged except that its --result_json keeps full precision.

The tool (ai_edge_litert.tools.benchmark_litert_model, the Python port of the C++ tool shipped in
ai-edge-litert 2.x) rounds every time in its JSON to 0.01 ms, and a call of this model takes a
few microseconds: its median reads 0.01 or even 0.00 ms. A module-level `round` shadows the
builtin for the JSON only; its timing loop and its printed lines (f-strings) stay as shipped.
Run as `python -m tests.bench.litert_tool --model=... [the tool's own flags]`.
"""

from ai_edge_litert.tools import benchmark_litert_model as tool


def main() -> None:
    tool.round = lambda value, digits=None: value
    tool.main()


if __name__ == "__main__":
    main()
