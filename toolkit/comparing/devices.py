"""compare on several devices: the host's rows and each `ssh://` device's rows, devices in
parallel (threads), the rows of one device one at a time.

The reference rows (runtimes that need TensorFlow) always run on the host: every device's rows
are judged against the host's reference outputs.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from toolkit import interrupts
from toolkit.comparing.data import EvalData
from toolkit.comparing.machine import describe_machine
from toolkit.comparing.measurement import Measurement, MeasureSettings
from toolkit.errors import ExitCode, ToolkitError
from toolkit.results import Row

LOCAL = "local"
HOST_ONLY = ("keras", "tensorflow")  # the reference runtimes: TensorFlow stays on the host
WAIT_SECONDS = 0.1


def parse_devices(
    devices: Sequence[str], ssh_config: Path | None = None, cluster: str | None = None
) -> list:
    """One executor per distinct device, in order: LOCAL, an SshExecutor, or with `cluster` a
    RayExecutor per device label (exit 2 for a device string that is none of these)."""
    from toolkit.comparing.executors.ssh import SshExecutor

    if cluster is not None:
        return _with_cluster(devices, ssh_config, cluster)

    if ssh_config is not None and not Path(ssh_config).is_file():
        raise ToolkitError(f"--ssh-config {ssh_config}: not a regular file", ExitCode.USAGE)
    executors, seen = [], set()
    for text in devices:
        if text == LOCAL:
            executor = LOCAL
        elif isinstance(text, str) and text.startswith("ssh://"):
            executor = SshExecutor(text, Path(ssh_config) if ssh_config else None)
        else:
            raise ToolkitError(
                f"--device {text!r}: expected local or ssh://[user@]host[:port]", ExitCode.USAGE
            )
        name = executor if executor == LOCAL else executor.name
        if name not in seen:
            seen.add(name)
            executors.append(executor)
    return executors


def _with_cluster(devices: Sequence[str], ssh_config: Path | None, cluster: str) -> list:
    """The devices with `--cluster`: local and ssh:// as without it, every other string a
    device label of the cluster (connected to now, so an unknown label stops everything)."""
    from toolkit.comparing.executors.ray import cluster_executors

    given = [d for d in devices if d == LOCAL or (isinstance(d, str) and d.startswith("ssh://"))]
    labels = list(dict.fromkeys(d for d in devices if d not in given))
    others = parse_devices(given, ssh_config) if given else []
    return others + cluster_executors(cluster, labels)


def open_all(remote: list) -> None:
    """Connects every remote device at once, before any row runs; a refused host key closes
    them all and stops the command."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(remote))) as pool:
        futures = [pool.submit(executor.open) for executor in remote]
        _wait(futures)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        for executor in remote:
            executor.close()
        raise errors[0]


def _wait(futures) -> None:
    """Waits for every future, looking at interrupts meanwhile: the threads read the same flag
    and wind down (closing their sessions) before the interrupt goes on."""
    while not all(future.done() for future in futures):
        concurrent.futures.wait(futures, timeout=WAIT_SECONDS)
        try:
            interrupts.check()
        except KeyboardInterrupt:
            concurrent.futures.wait(futures)
            raise


def measure_on_devices(
    out: Path,
    plan: list,
    data: EvalData,
    settings: MeasureSettings,
    on_row: Callable[[Row], None],
    executors: list,
    local_executor,
    measure_plan: Callable,
) -> list[tuple[Row, object]]:
    """(row, Measurement or reason) of every row on every device: the host's first (the
    reference among them), then each remote device's, each row's `device` filled in."""
    remote = [executor for executor in executors if executor != LOCAL]
    open_all(remote)
    host_plan = plan if LOCAL in executors else [p for p in plan if p[1].runtime in HOST_ONLY]
    work = [(LOCAL, local_executor, host_plan)]
    work += [(ex, ex, [p for p in plan if p[1].runtime not in HOST_ONLY]) for ex in remote]
    lock = threading.Lock()

    def run(device, executor, subplan) -> list[tuple[Row, object]]:
        name = device if device == LOCAL else device.name

        def heard(row: Row) -> None:
            with lock:
                on_row(replace(row, device={"name": name}))

        results = measure_plan(out, subplan, data, settings, heard, executor)
        machine = describe_machine() if device == LOCAL else device.machine
        return [(_with_device(row, result, name, machine), result) for row, result in results]

    work = [item for item in work if item[2]]
    if len(work) == 1:  # the host alone: in this thread, as compare always ran
        return run(*work[0])
    with concurrent.futures.ThreadPoolExecutor(len(work)) as pool:
        futures = [pool.submit(run, *item) for item in work]
        try:
            _wait(futures)
        finally:
            for executor in remote:
                executor.close()
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise next((e for e in errors if isinstance(e, KeyboardInterrupt)), errors[0])
    return [pair for future in futures for pair in future.result()]


def _with_device(row: Row, result: object, name: str, machine: dict) -> Row:
    """The row with the description of the device it ran on (the Measurement's, which names the
    runtime's version, when it ran)."""
    described = result.machine if isinstance(result, Measurement) and result.machine else machine
    return replace(row, device={"name": name, **described})
