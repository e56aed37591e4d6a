"""What the kernel says of a process tree: RSS, peak RSS, open file descriptors, CPU time.

Read from /proc (Linux), without psutil: the benchmark harness runs where kaq runs.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """A process and all its descendants (those alive now)."""
    out = [pid]
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(tree(int(child)))
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size of one process now, in KiB (0 once it has gone)."""
    return _status_kb(pid, "VmRSS:")


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and its descendants, added up, in KiB."""
    return sum(rss_kb(p) for p in tree(pid))


def fds(pid: int) -> int:
    """Open file descriptors of one process."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tree_fds(pid: int) -> int:
    return sum(fds(p) for p in tree(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


class PeakRss:
    """Polls the RSS of a process tree every `every` seconds while in a `with` block.

    `peak_kb` is the largest sum over the tree seen, `peak_one_kb` the largest single
    process. Polling can miss a spike shorter than the interval; a process's own VmHWM
    cannot (read with `hwm_kb` while it is alive, or `ru_maxrss` once it is reaped).
    """

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every = pid, every
        self.peak_kb = self.peak_one_kb = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [rss_kb(p) for p in tree(self.pid)]
            if sizes and sum(sizes):
                self.samples += 1
                self.peak_kb = max(self.peak_kb, sum(sizes))
                self.peak_one_kb = max(self.peak_one_kb, max(sizes))
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def hwm_kb(pid: int) -> int:
    """Peak RSS of one process since it started (VmHWM), in KiB."""
    return _status_kb(pid, "VmHWM:")


def wait_for(predicate, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
