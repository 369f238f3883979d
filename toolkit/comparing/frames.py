"""The framed protocol between compare and its agent on a device, over one pair of pipes.

A frame is a JSON header and a binary payload, each preceded by its length. Reads and writes
wait with select() in short slices and call `on_wait` between them, so a caller can stop on an
interrupt, a deadline or a dead peer; every length is checked against a cap before anything is
read. Standard library only: the agent runs it on a device with just Python and numpy.
"""

from __future__ import annotations

import json
import os
import select
import struct
from collections.abc import Callable
from pathlib import Path

# Written by the agent before its first frame: anything a login shell prints before it
# (a banner, a .bashrc's echo) is skipped, up to SYNC_LIMIT bytes.
MAGIC = b"\x00toolkit-agent/1\n"
SYNC_LIMIT = 1 << 16
PREFIX = struct.Struct(">IQ")  # header length, payload length
MAX_HEADER = 1 << 20
POLL_SECONDS = 0.1
CHUNK = 1 << 20


class ChannelClosed(Exception):
    """The peer closed its end (end of file, or a broken pipe)."""


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol, or one over a cap."""


def _never() -> None:
    return None


class Channel:
    """Frames over two file descriptors (the agent's stdin/stdout, or ssh's pipes)."""

    def __init__(self, read_fd: int, write_fd: int, on_wait: Callable[[], None] = _never):
        self.read_fd, self.write_fd, self.on_wait = read_fd, write_fd, on_wait

    def _wait(self, fd: int, write: bool) -> None:
        while True:
            readable, writable, _ = select.select(
                [] if write else [fd], [fd] if write else [], [], POLL_SECONDS
            )
            if readable or writable:
                return
            self.on_wait()

    def read_exact(self, count: int) -> bytes:
        parts, left = [], count
        while left:
            self._wait(self.read_fd, write=False)
            chunk = os.read(self.read_fd, min(left, CHUNK))
            if not chunk:
                raise ChannelClosed("the other side closed the connection")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._wait(self.write_fd, write=True)
            try:
                written = os.write(self.write_fd, view[:CHUNK])
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed("the other side closed the connection") from None
            view = view[written:]

    def sync(self) -> None:
        """Skips what comes before MAGIC; ProtocolError when it does not come soon enough."""
        seen, count = b"", 0
        while not seen.endswith(MAGIC):
            if count > SYNC_LIMIT:
                raise ProtocolError("no agent answered (the remote command printed other text)")
            seen = seen[-len(MAGIC) :] + self.read_exact(1)
            count += 1

    def send(self, header: dict, payload: bytes | Path = b"") -> None:
        """One frame; a Path payload is streamed from the file, never held whole."""
        encoded = json.dumps(header, allow_nan=False).encode()
        size = payload.stat().st_size if isinstance(payload, Path) else len(payload)
        self.write_all(PREFIX.pack(len(encoded), size) + encoded)
        if not isinstance(payload, Path):
            self.write_all(payload)
            return
        with payload.open("rb") as source:
            for chunk in iter(lambda: source.read(CHUNK), b""):
                self.write_all(chunk)

    def receive_header(self, max_payload: int) -> tuple[dict, int]:
        """The next frame's header and the size of its payload (still unread)."""
        header_size, payload_size = PREFIX.unpack(self.read_exact(PREFIX.size))
        if header_size > MAX_HEADER:
            raise ProtocolError(f"a frame header of {header_size} bytes (at most {MAX_HEADER})")
        if payload_size > max_payload:
            raise ProtocolError(f"a payload of {payload_size} bytes (at most {max_payload})")
        try:
            header = json.loads(self.read_exact(header_size))
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError("a frame header that is not JSON") from None
        if not isinstance(header, dict) or not isinstance(header.get("op"), str):
            raise ProtocolError("a frame header without an op")
        return header, payload_size

    def receive(self, max_payload: int) -> tuple[dict, bytes]:
        header, size = self.receive_header(max_payload)
        return header, self.read_exact(size)

    def receive_into(self, size: int, sink: Callable[[bytes], object]) -> None:
        """Hands a payload of `size` bytes to `sink` a chunk at a time."""
        left = size
        while left:
            chunk = self.read_exact(min(left, CHUNK))
            sink(chunk)
            left -= len(chunk)
