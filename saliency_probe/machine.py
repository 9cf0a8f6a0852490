"""What machine a benchmark ran on: CPU model and load average, for the reports in docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``, as ``lscpu`` shows it), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average(separator: str = " / ") -> str:
    """The 1, 5 and 15 minute load averages (other jobs on the machine disturb timings)."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return separator.join(f"{value:.1f}" for value in os.getloadavg())
