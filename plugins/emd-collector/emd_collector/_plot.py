"""plot_recording: a recording's values against time as an image (matplotlib, Agg), one panel
per unit, with the line broken wherever the source was disconnected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._frames import PVSelection, TimeLike, require, select
from ._recorder import is_gap
from ._recording import RecordedPV
from ._sources import Source, describe, recording_of

NO_UNITS = "(no units)"
MARKER_TIME_NS = 1000
"""An event is that of a gap marker row within this many ns (its time is kept as a float)."""


def plottable(pv: RecordedPV) -> bool:
    """Numbers that make a line: numeric and boolean scalars, enum indices."""
    values = pv.columns.get("value")
    return pv.kind in ("scalar", "enum") and values is not None and values.dtype.kind in "biuf"


def with_gaps(pv: RecordedPV) -> tuple[np.ndarray, np.ndarray]:
    """`pv`'s times (ns, in time order) and values as float64, NaN at every gap marker row
    (see collector.md, "Gaps in the data": live collectors and files alike have them) and at
    every ``disconnected`` event that falls between two samples (recordings that only have the
    events: older files, a stopped recording), so a line is not drawn across the time the
    source was gone. Event times come from the collector's clock, sample times from the source's."""
    times = pv.columns["time_ns"]
    order = np.argsort(times, kind="stable")
    times, values = times[order], pv.columns["value"][order].astype(np.float64)
    markers = np.zeros(0, np.int64)
    if "severity" in pv.columns and "status" in pv.columns:
        gap = is_gap({name: pv.columns[name][order] for name in ("severity", "status")})
        values[gap], markers = np.nan, times[gap]
    breaks = np.array([round(e.time * 1e9) for e in pv.events if e.kind == "disconnected"], dtype=np.int64)
    if len(markers) and len(breaks):  # an event with its marker row (same time) breaks the line once
        breaks = breaks[np.abs(breaks[:, None] - markers[None, :]).min(axis=1) > MARKER_TIME_NS]
    at = np.searchsorted(times, breaks, side="right")
    inside = (at > 0) & (at < len(times))
    return np.insert(times, at[inside], breaks[inside]), np.insert(values, at[inside], np.nan)


def plot_recording(source: Source, output: str | Path, pvs: PVSelection = None, start: TimeLike | None = None,
                   end: TimeLike | None = None, title: str | None = None) -> Any:
    """Plot the numeric PVs of `source` (a CollectorClient, an exported file's path or a
    Recording) against time (UTC) into `output` (its suffix picks the format: png, pdf, svg,
    ...): one panel per unit, a line per PV, broken at disconnections. PVs that are not
    numbers (strings, waveforms) are left out; ValueError if nothing is left. Returns the
    matplotlib Figure (its lines hold the plotted data)."""
    require("matplotlib", "plot_recording", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recording = recording_of(source, pvs, start, end)
    selected = select(recording, pvs, start, end)
    panels: dict[str, list[RecordedPV]] = {}
    for pv in selected:
        if plottable(pv):
            panels.setdefault(pv.units or NO_UNITS, []).append(pv)
    if not panels:
        kinds = ", ".join(f"{pv.name} ({pv.kind})" for pv in selected) or "no PVs"
        raise ValueError(f"nothing to plot: no numeric PVs among {kinds}")
    figure = Figure(figsize=(10, 1.0 + 2.6 * len(panels)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (units, members) in zip(axes, panels.items()):
        for pv in members:
            times, values = with_gaps(pv)
            ax.plot(times.astype("datetime64[ns]"), values, label=pv.name, linewidth=1.0)
        ax.set_ylabel(units)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("time (UTC)")
    figure.suptitle(title or describe(recording))
    output = Path(output)
    try:
        figure.savefig(output, dpi=100)
    except ValueError as exc:  # an unknown suffix: matplotlib says which formats it knows
        raise ValueError(f"cannot write {output.name}: {exc}") from None
    return figure


__all__ = ["plot_recording", "plottable", "with_gaps"]
