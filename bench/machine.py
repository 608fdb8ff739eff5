"""What the benches read off the machine (/proc) and the Debian tools they install when missing."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any


def cpu_seconds_of(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of ``pids`` so far (a process that is gone counts as zero)."""
    seconds = {}
    for pid in pids:
        ticks = 0
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
        seconds[pid] = ticks / os.sysconf("SC_CLK_TCK")
    return seconds


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent not idle since boot (/proc/stat; idle and iowait count as idle)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (uvicorn's workers, nginx's worker)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def python_speed(repeat: int = 5) -> float:
    """Thousands of iterations per second of a fixed pure-Python workload (dict, str and int work), best of
    ``repeat``: one core's speed right now. The machines these benches run on are shared, and their speed has been
    seen to move by a factor of two between hours with nothing else running; this figure is printed beside every
    result so figures from different runs can be put side by side."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        table: dict[str, int] = {}
        for number in range(200_000):
            key = f"k{number % 5_000}"
            table[key] = table.get(key, 0) + number * 3 // 7
        best = min(best, time.perf_counter() - started)
    return 200 / best


def describe_machine() -> str:
    """The line every bench prints first."""
    return (
        f"machine: {os.cpu_count()} CPUs, load average {load_average()} (other processes skew figures), "
        f"one core's Python speed {python_speed():,.0f}k loops/s (bench/machine.py)"
    )


def _which(binary: str) -> str | None:
    return shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)


def ensure_debian_tool(binary: str, package: str) -> str | None:
    """Path of ``binary``; Debian's ``package`` is installed when it is missing and we are root."""
    found = _which(binary)
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print(f"{binary} is missing: apt-get install -y {package}")
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", package], env=environment, **quiet).returncode != 0:
        subprocess.run(["apt-get", "update"], **quiet)
        subprocess.run(["apt-get", "install", "-y", package], env=environment, **quiet)
    return _which(binary)
