"""The machine a timing ran on, its load, and this process's peak RSS."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the largest value seen since ``reset``."""

    def __init__(self, interval: float = 0.01) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> int:
        return self.process.memory_info().rss

    def reset(self) -> int:
        now = self.current()
        self.peak = now
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def mb(n_bytes: float) -> float:
    """Bytes in MiB."""
    return n_bytes / 2**20


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using CPU right now (the timings share the machine with them)."""
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid != me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            load = p.cpu_percent(None)
            if load >= threshold:
                busy.append(f"{p.info['name']} (pid {p.pid}): {load:.0f}% CPU, {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            pass
    return busy


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, threads, library versions, memory, load and busy processes at the start of a run."""
    import peft
    import transformers

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_threads_requested": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "memory_total_mb": round(mb(psutil.virtual_memory().total)),
        "load_average_start": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "other_busy_processes": busy_processes(),
    }
