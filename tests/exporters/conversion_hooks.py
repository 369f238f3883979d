"""Entry points for a converter process that misbehaves on purpose (tests/exporters/
test_conversion.py): the child imports this small module, not the test's."""

from __future__ import annotations

import ctypes
import os
import time

from toolkit.exporters import conversion

# The serving loop as imported: a test replaces the module's name in its own process, and a
# forked converter process inherits that replacement.
SERVE = conversion.serve_conversions


def _segfault(*args):
    ctypes.string_at(0)  # reads address 0 in native code: SIGSEGV, as a converter bug does


def crashing_serve(connection, warm: bool = True) -> None:
    """The converter process, with the full-int8 TFLite conversion crashing natively."""
    original = conversion.CONVERSIONS["tflite"]

    def tflite(shared, savedmodel, variant, calibration):
        if variant == "int8":
            _segfault()
        return original(shared, savedmodel, variant, calibration)

    conversion.CONVERSIONS["tflite"] = tflite
    SERVE(connection, warm)


def misbehaving_serve(connection, warm: bool = False) -> None:
    """The converter process with conversions that name their process, raise, abort or hang."""
    conversion.CONVERSIONS.update(
        pid=lambda shared: os.getpid(),
        raise_=lambda shared: int("not a number"),
        abort=lambda shared: os.abort(),
        hang=lambda shared: time.sleep(60),
    )
    SERVE(connection, warm)
