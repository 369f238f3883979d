"""The figure process: figures drawn beside the caller, handed back in order."""

import struct
import time

from toolkit.figures import FigureProcess, pyplot


def slow_figure(seconds: float, width_inches: int):
    time.sleep(seconds)
    return pyplot().figure(figsize=(width_inches, 1))


def png_width(png: bytes) -> int:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">I", png[16:20])[0]  # IHDR's width


def test_idle_only_once_every_queued_figure_is_back_and_pngs_keep_their_order():
    with FigureProcess() as figures:
        assert figures.idle()
        figures.draw(slow_figure, 1.0, 1, trim=False)
        figures.draw(slow_figure, 0.0, 2, trim=False)
        assert not figures.idle()
        deadline = time.monotonic() + 60
        while not figures.idle():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [png_width(png) for png in figures.pngs()] == [100, 200]  # 100 dpi
        assert figures.idle() and figures.pngs() == []
