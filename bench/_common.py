"""Shared pieces: results with their statistics, and ending the processes a benchmark starts."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the working directory of every process a benchmark starts."""
REPORT = ROOT / "docs" / "performance.md"
"""Where the figures are kept, with the machine they came from."""
SOAK_HEADING = "\n## Soak\n"
"""The report's last section, written by ``python -m bench.soak --write`` alone: ``python -m
bench`` keeps it as it is."""


def soak_section() -> str:
    """The report's soak section as it is now ("" if it has none)."""
    text = REPORT.read_text() if REPORT.exists() else ""
    _, found, rest = text.partition(SOAK_HEADING)
    return SOAK_HEADING + rest if found else ""


def ms(seconds: float) -> str:
    """Milliseconds, with three decimals below 10 ms and one above."""
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def p99(samples: list[float]) -> float:
    """The 99th percentile, the same way emd_ping.PingStatistics computes it (the maximum
    for fewer than 100 samples)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@dataclass
class Result:
    """One benchmark: samples through the device and through its bare-p4p baseline, both taken
    in the same run; in seconds (shown in ms) when `unit` is "ms", else in that unit (s, MB,
    us, B, updates: whole counts)."""

    name: str
    device: list[float]
    baseline: list[float]
    baseline_name: str
    target: float | None = None
    """Largest acceptable ratio of medians, device/baseline (None: no target)."""
    limit: float | None = None
    """Largest acceptable device median, in the samples' unit (None: no limit)."""
    unit: str = "ms"
    floor: float | None = None
    """Smallest acceptable device median, in the samples' unit (None: no floor)."""

    def show(self, value: float) -> str:
        if self.unit == "updates":
            return f"{value:.0f}"
        if self.unit == "s":
            return f"{value:.3f}"
        return ms(value) if self.unit == "ms" else f"{value:.1f}"

    @property
    def ratio(self) -> float:
        return statistics.median(self.device) / statistics.median(self.baseline)

    @property
    def verdict(self) -> str:
        if self.target is None and self.limit is None and self.floor is None:
            return "-"
        median = statistics.median(self.device)
        missed = (
            (self.target is not None and self.ratio > self.target)
            or (self.limit is not None and median > self.limit)
            or (self.floor is not None and median < self.floor)
        )
        return "MISSED" if missed else "ok"

    def cells(self) -> list[str]:
        """Table cells: name, n, unit, medians and p99s, ratio, targets, verdict."""
        targets = [f"<= {self.target:g}x"] if self.target is not None else []
        if self.limit is not None:
            targets.append(f"median <= {self.show(self.limit)} {self.unit}")
        if self.floor is not None:
            targets.append(f"median >= {self.show(self.floor)} {self.unit}")
        return [
            self.name,
            self.baseline_name,
            f"{len(self.device)}/{len(self.baseline)}",
            self.unit,
            self.show(statistics.median(self.device)),
            self.show(p99(self.device)),
            self.show(statistics.median(self.baseline)),
            self.show(p99(self.baseline)),
            f"{self.ratio:.2f}x",
            ", ".join(targets) or "-",
            self.verdict,
        ]


HEADER = [
    "benchmark", "baseline", "n dev/base", "unit", "device median", "device p99",
    "baseline median", "baseline p99", "ratio", "target", "verdict",
]


def end_process(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """Wait for `process` (already asked to finish) to exit; terminate, then kill it, if it
    will not. Returns the exit code. Always leaves no process behind."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            return process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def start_helper(module: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m bench.<module> ARGS`` (a bare-p4p baseline: bare_echo, bare_relay,
    bare_monitor, bare_source); return once it printed ``ready``. Talk to it with `ask`."""
    process = subprocess.Popen([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if ask(process) != "ready":
        end_process(process, timeout=1.0)
        raise RuntimeError(f"bench.{module} exited with {process.returncode} before serving")
    return process


def ask(process: subprocess.Popen[str], line: str = "") -> str:
    """Send `line` (if any) to a helper and return its answer (one line)."""
    assert process.stdin is not None and process.stdout is not None
    if line:
        process.stdin.write(line + "\n")
        process.stdin.flush()
    return process.stdout.readline().strip()


def stop_helper(process: subprocess.Popen[str]) -> None:
    """Close a helper's standard input (it exits on that) and make sure it is gone."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    end_process(process)
    process.stdout.close()


def pin(pid: int, cpus: set[int]) -> None:
    """Run every thread of process `pid` on `cpus` from now on (threads started later
    inherit it from the thread that starts them). A process that has ended is left alone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:  # a thread that just ended
            pass


@contextmanager
def separate_cpus(measured: list[int], others: list[int]) -> Iterator[None]:
    """The `measured` processes (devices, relays) on one CPU, this process (the clients) and
    `others` (sources, IOCs) on another, until the block ends. Unpinned, where the scheduler
    puts which thread on 2 CPUs swings a window's CPU time by 10-20 % and latencies as much,
    more than the differences measured. (A pinned collector receives less per second: rates
    are measured unpinned.)"""
    allowed = set(os.sched_getaffinity(0))
    first, last = min(allowed), max(allowed)
    if first == last:
        yield
        return
    for pid in measured:
        pin(pid, {last})
    for pid in [os.getpid(), *others]:
        pin(pid, {first})
    try:
        yield
    finally:
        for pid in [os.getpid(), *others, *measured]:
            pin(pid, allowed)
