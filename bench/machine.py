"""The machine a benchmark ran on, and its processes' peak memory: torch and the standard library only.

Every script in bench/ prints `machine()` in its header, so that figures from different
machines are never compared as if they were one (issue 18). Nothing here imports
stylecore: `bench.peer_workers` uses it inside the peers' own virtual environment.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's processor string elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or "unknown CPU")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    """One line naming the CPU (or GPU), core count, torch version and threads, and the load when called."""
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads{gpu}; load average {load_average()}")


def print_machine() -> None:
    """The header line every benchmark starts with."""
    print(f"machine: {machine()}", flush=True)


def reset_peak_rss() -> None:
    """Start a new peak window for this process's resident set (VmHWM back to the current RSS)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_bytes() -> int:
    """This process's peak resident set since `reset_peak_rss` (or its start)."""
    return _status_kib("VmHWM") * 1024


def current_rss_bytes() -> int:
    """This process's resident set now."""
    return _status_kib("VmRSS") * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
