"""The paced runtime's module: its import is what a worker does before it may load."""

import time

from tests.paced import IMPORT_SECONDS, log

log("import", "start")
time.sleep(IMPORT_SECONDS)
log("import", "end")
