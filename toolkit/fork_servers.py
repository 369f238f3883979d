"""Fork servers of toolkit's own, one per set of preloaded modules, where the standard library
keeps one per process whose preload is fixed when it starts: the workers of one runtime would
then either import that runtime each time or be forked with another's (TensorFlow's) memory.

Linux and macOS only (a forkserver context); standard library only.
"""

from __future__ import annotations

import io
import os
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util

# This process's servers by what they preload.
SERVERS: dict[tuple[str, ...], forkserver.ForkServer] = {}
# A child forked as a whole (`fork`) inherits the table but is not these servers' client.
os.register_at_fork(after_in_child=SERVERS.clear)


def server(preload: tuple[str, ...], also: tuple[str, ...] = ()) -> forkserver.ForkServer:
    """The server of `preload`, made (not started) on first use to import `preload`, then
    `also`, when it starts."""
    if preload not in SERVERS:
        SERVERS[preload] = forkserver.ForkServer()
        SERVERS[preload].set_forkserver_preload([*preload, *(m for m in also if m not in preload)])
    return SERVERS[preload]


class ServerPopen(popen_forkserver.Popen):
    """The standard library's forkserver Popen, but asking the server of the process object's
    `server_key`: `_launch` is the standard library's (3.10-3.13) but for that one call."""

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = SERVERS[process_obj.server_key].connect_to_new_process(self._fds)
        parent_w = os.dup(w)  # the child's sentinel of its parent
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class ServerProcess(context.ForkServerProcess):
    """A process forked by the server of `server_key` (set before `start`)."""

    server_key: tuple[str, ...] = ()

    @staticmethod
    def _Popen(process_obj):  # noqa: N802 - the name multiprocessing calls
        return ServerPopen(process_obj)


class ServerContext(context.ForkServerContext):
    """The forkserver context whose `Process` is forked by the server of `key`."""

    def __init__(self, key: tuple[str, ...]):
        self.key = key

    def Process(self, *args, **kwargs) -> ServerProcess:  # noqa: N802 - multiprocessing's name
        process = ServerProcess(*args, **kwargs)
        process.server_key = self.key
        return process
