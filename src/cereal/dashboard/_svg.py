"""The shapes of a server-drawn SVG chart, laid out in Python and written by ``_chart.html``.

A chart is plain data: marks (rectangles, each in a group with its own
``<title>`` so a pointer or a screen reader gets the exact numbers), text
labels and grid lines, all in the coordinates of a fixed ``viewBox`` that the
browser scales to the page's width. Colours come from CSS classes in
``dashboard.css`` (the page's Content-Security-Policy allows no inline
styles), so the template needs no logic beyond loops.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 720
"""Every chart's ``viewBox`` width; heights vary with the content."""


@dataclass(frozen=True)
class Rect:
    """A filled rectangle; ``kind`` is its CSS class (which series it draws)."""

    x: float
    y: float
    width: float
    height: float
    kind: str


@dataclass(frozen=True)
class Group:
    """One datum drawn: its rectangles and the text a reader gets for it (``<title>``)."""

    title: str
    rects: tuple[Rect, ...]
    key: str = ""
    """What the datum is (a bucket's start, a task name), for tests and styling hooks."""


@dataclass(frozen=True)
class Label:
    """Text at a point; ``anchor`` is SVG's ``text-anchor`` (start, middle, end)."""

    x: float
    y: float
    text: str
    anchor: str = "start"
    kind: str = "axis"


@dataclass(frozen=True)
class Line:
    """A grid or axis line."""

    x1: float
    y1: float
    x2: float
    y2: float
    kind: str = "grid"


@dataclass(frozen=True)
class Chart:
    """A whole chart: what the template writes as one ``<svg>`` element.

    ``empty`` charts show ``summary`` alone (e.g. "No runs finished in this
    window") instead of an axis with nothing on it.
    """

    name: str
    """The chart's id stem (``throughput``, ``queues``, ``timeline``)."""
    title: str
    summary: str
    """One sentence with the chart's totals: the accessible description, shown below it."""
    height: float
    groups: tuple[Group, ...] = ()
    labels: tuple[Label, ...] = ()
    lines: tuple[Line, ...] = ()
    legend: tuple[tuple[str, str], ...] = ()
    """``(kind, text)`` pairs: each series' colour and what it stands for."""
    empty: bool = False
    width: float = WIDTH


def scale(value: float, top: float, length: float) -> float:
    """``value`` of ``top`` as a share of ``length`` (0 when ``top`` is 0)."""
    return 0.0 if top <= 0 else length * value / top


def nice_top(value: int) -> int:
    """A round axis maximum at or above ``value``: 1, 2 or 5 times a power of ten."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10
