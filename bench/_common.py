"""Shared pieces: results with their statistics, and ending the processes a benchmark starts."""

from __future__ import annotations

import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the working directory of every process a benchmark starts."""


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
    """One benchmark: samples in seconds through the device and through its bare-p4p baseline,
    both taken in the same run."""

    name: str
    device: list[float]
    baseline: list[float]
    baseline_name: str
    target: float | None = None
    """Largest acceptable ratio of medians, device/baseline (None: no target)."""

    @property
    def ratio(self) -> float:
        return statistics.median(self.device) / statistics.median(self.baseline)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        return "ok" if self.ratio <= self.target else "MISSED"

    def cells(self) -> list[str]:
        """Table cells: name, n, medians and p99s in ms, ratio, target, verdict."""
        return [
            self.name,
            self.baseline_name,
            f"{len(self.device)}/{len(self.baseline)}",
            ms(statistics.median(self.device)),
            ms(p99(self.device)),
            ms(statistics.median(self.baseline)),
            ms(p99(self.baseline)),
            f"{self.ratio:.2f}x",
            f"<= {self.target:g}x" if self.target is not None else "-",
            self.verdict,
        ]


HEADER = [
    "benchmark", "baseline", "n dev/base", "device median ms", "device p99 ms",
    "baseline median ms", "baseline p99 ms", "ratio", "target", "verdict",
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
