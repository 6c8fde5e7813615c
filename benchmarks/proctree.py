"""Memory of a process tree, sampled from /proc (Linux): the benchmarks' one way to measure it.

`TreeMemory(root_pid)` is a thread that samples the root process and all its descendants every
`interval` seconds until stopped, keeping each process's peak RSS (with a short name for what it
runs: launcher, sdk worker, ffmpeg ...) and the peaks of the tree's summed RSS and PSS. PSS counts
pages shared between processes (a model shared by fork, the Python libraries) once, split among
them, so it is the fair figure for "how much memory does this run hold".
"""

from __future__ import annotations

import os
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 2**20


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        tree.setdefault(parent, []).append(int(name))
    return tree


def tree(root: int) -> list[int]:
    """`root` and every descendant of it alive now."""
    links, found, pending = children(), [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(links.get(pid, []))
    return found


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process; (0, 0) once it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            rss = int(handle.read().split()[1]) * _PAGE
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


def what(pid: int) -> str:
    """A short name for a process of a build: launcher, sdk worker, or the program's name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return "?"
    text = " ".join(argv)
    if "pipeline.build" in text:
        return "launcher"
    if "sdk_worker_main" in text:
        return "sdk worker"
    return os.path.basename(argv[0]) or "?"


class TreeMemory(threading.Thread):
    """Samples a process tree's memory until `stop()`; a context manager that starts and stops itself.

    Attributes:
        peak_rss, peak_pss: Peaks of the tree's summed RSS / PSS, in bytes.
        peak_processes: Most processes alive in the tree at one sample.
        peaks: pid -> (peak RSS in bytes, what it runs).
    """

    def __init__(self, root: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self.peaks: dict[int, tuple[int, str]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = tree(self.root)
            total_rss = total_pss = 0
            for pid in pids:
                rss, pss = memory(pid)
                total_rss, total_pss = total_rss + rss, total_pss + pss
                if rss > self.peaks.get(pid, (0, ""))[0]:
                    self.peaks[pid] = (rss, self.peaks.get(pid, (0, ""))[1] or what(pid))
            self.peak_rss, self.peak_pss = max(self.peak_rss, total_rss), max(self.peak_pss, total_pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        """Ends the sampling and waits for the last sample."""
        self._stop_event.set()
        self.join()

    def peak_mib(self, pid: int) -> float:
        """One process's peak RSS in MiB (0 if never seen)."""
        return self.peaks.get(pid, (0, ""))[0] / MIB

    def __enter__(self) -> TreeMemory:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
