"""A proposal as a timeline drawing: each session's window and where it lands, in SVG coordinates.

SVG attributes rather than inline styles: the Content-Security-Policy allows no inline style.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from plans.services import Proposal

WIDTH = 600  # the drawing's user units; it scales to the page


@dataclass(frozen=True)
class Row:
    index: int
    y: int
    window_x: float
    window_w: float
    ideal_x: float
    placed_x: float
    label: str


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    first: date
    last: date
    rows: list[Row]


def timeline_of(proposal: Proposal) -> Drawing:
    """The axis runs from the first window's opening to the last window's close (the first session's window,
    a year long, is drawn to the end of the axis)."""
    tz = proposal.request.tz
    sessions = proposal.plan.sessions
    first = min(s.window.earliest for s in sessions)
    last = max([s.window.latest for s in sessions[1:]] + [s.start_at.astimezone(tz).date() for s in sessions])
    last = max(last, first + timedelta(days=14))
    span = (last - first).days or 1

    def x(day: date) -> float:
        return round(WIDTH * min(max((day - first).days, 0), span) / span, 1)

    rows = []
    for n, session in enumerate(sessions):
        day = session.start_at.astimezone(tz).date()
        start, end = x(session.window.earliest), x(min(session.window.latest, last) + timedelta(days=1))
        rows.append(
            Row(
                session.index,
                10 + 28 * n,
                start,
                max(end - start, 2),
                x(session.window.ideal),
                x(day),
                f"{session.index}: {day:%d %b}",
            )
        )
    return Drawing(WIDTH, 20 + 28 * len(rows), first, last, rows)
