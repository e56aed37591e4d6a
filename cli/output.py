"""Checked output: every byte written, or the command says it was not.

`os.write` may write fewer bytes than asked (a pipe, a signal, a full disk) and a single
call passes at most about 2 GB on Linux: a `print` of a large result was silently cut
there, with exit status 0. `Output` writes in bounded pieces, loops until each piece is
written whole, and turns a failure into `OutputError`, which the commands report as an
incomplete output with a non-zero exit status.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

PIECE = 1 << 20  # at most this many bytes per write call
_BUFFER = 64 * 1024


def for_stdout() -> Output:
    """The checked output on standard output: its file descriptor when it is the process's
    own, else (a test runner capturing it) the replacement's binary buffer."""
    import sys

    stream = sys.stdout
    if stream is sys.__stdout__ and stream is not None:
        stream.flush()
        return Output(stream.fileno())
    buffer = getattr(stream, "buffer", None)

    def write(_fd: int, data: memoryview) -> int:
        if buffer is not None:
            return buffer.write(bytes(data)) or len(data)
        stream.write(bytes(data).decode("utf-8"))
        return len(data)

    return Output(-1, write)


class OutputError(Exception):
    """The output could not be written whole."""


class Output:
    """A buffered, checked writer over a file descriptor.

    `write` is the function that writes (os.write by default; tests give one that writes
    only part of each piece, or fails). `written` counts the bytes that really went out.
    """

    def __init__(self, fd: int = 1, write: Callable[[int, memoryview], int] | None = None):
        self.fd = fd
        self._write = write or os.write
        self._pending: list[bytes] = []
        self._size = 0
        self.written = 0
        self.failed: BaseException | None = None

    def write(self, data: bytes) -> None:
        """Queue bytes; they are written once the buffer fills, or at `flush`."""
        if self.failed is not None:
            raise OutputError(f"output already failed: {self.failed}")
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _BUFFER:
            self.flush()

    def flush(self) -> None:
        """Write everything queued; raise OutputError if any byte could not be written."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        view = memoryview(data)
        stalls = 0
        while view:
            try:
                n = self._write(self.fd, view[:PIECE])
            except InterruptedError:
                continue
            except OSError as exc:
                self.failed = exc
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                if exc.errno == errno.EPIPE:
                    reason = "the reader closed the pipe"
                raise OutputError(f"{reason} after {self.written:,} bytes") from None
            if n <= 0:
                stalls += 1
                if stalls > 100:
                    self.failed = OSError("no progress")
                    raise OutputError(f"the output accepts no more bytes after {self.written:,}")
                continue
            stalls = 0
            self.written += n
            view = view[n:]
