"""Ctrl-C and SIGTERM as a flag that the pipeline checks between steps and inside long loops.

A KeyboardInterrupt raised from a signal handler can land inside a library's destructor, where
Python prints "Exception ignored" and carries on; a flag read at known points is never lost.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _note(signum, frame) -> None:
    _received.append(signum)


def check() -> None:
    """Raises KeyboardInterrupt when SIGINT or SIGTERM arrived while `deferred` was active."""
    if _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred():
    """For one command: signals only set the flag `check` reads; the old handlers come back after.

    Off the main thread (where Python cannot install handlers) signals keep their usual effect.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _note) for signum in SIGNALS}
    _received.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()
