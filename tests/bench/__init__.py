"""`make bench`: ratios between things measured in one run on one machine.

Run as `python -m tests.bench --out OUT`; it writes OUT/bench/bench.{json,md,png}. It is not part
of `make test`: no module here starts with `test_`, so pytest never collects one.
"""

import os

# The caller's environment as it was before `import toolkit` set its TensorFlow defaults (oneDNN
# off, quiet logs): the tutorial script must run the way a user runs it, so it gets this copy.
USER_ENV = dict(os.environ)
