"""The calendar's empty cells, built in Python: a day of 10 practitioners has 440 of them, and the same
markup through template tags (a URL reversed per cell, dates formatted per cell) was most of the page's
server time (docs/frontdesk.md, "Speed")."""

from urllib.parse import quote

from django import template
from django.utils.html import format_html

register = template.Library()

BOOKED_ELSEWHERE = "Booked at another site"


@register.simple_tag
def free_cell(cell, book_url: str, week: bool):
    """An empty quarter hour: a link to book it (calendar.js opens it in place), or the time off there, or a
    local time the clocks skip, or "Booked at another site" where the practitioner has a visit at another clinic
    (nothing more of it: `day_grid`), or nothing in the column of a practitioner who no longer works here (no longer
    active, or at another site now).

    `book_url` is the booking-from-a-cell page, reversed once for the whole grid.
    """
    practitioner = cell.practitioner
    closed = cell.time_off or cell.skipped or not cell.bookable
    classes = "cal-cell" + (" cal-cell--working" if cell.working and not cell.skipped and cell.bookable else "")
    classes += " cal-cell--off" if closed else ""
    # In the hour the clocks go back over the wall time happens twice: a card dropped on any of its cells (free, time
    # off, an inactive practitioner's) asks with the cell's instant (calendar.js reads the cell's [data-start-at]), so
    # the check judges that instant ("is off at that time"), never the wall time ("happens twice"). A skipped cell has
    # no instant: its wall time is asked, and answered as such.
    exact = (
        format_html(' data-start-at="{}"', cell.starts_at.isoformat()) if " " in cell.label and not cell.skipped else ""
    )
    if not cell.bookable and not cell.elsewhere:  # their visits are shown, nothing is booked with them here
        inner = format_html('<span class="visually-hidden"{}>{}</span>', exact, cell.gone or "No longer active")
    elif cell.skipped:  # the clocks go forward over it (a link would book the hour after), or a week's other days'
        # second reading of the hour they go back over
        why = "the clocks go back on another day" if " " in cell.local_time else "the clocks go forward"
        inner = format_html('<span class="cal-off">No such time: {}</span>', why)
    elif cell.time_off:
        inner = format_html('<span class="cal-off"{}>{}</span>', exact, cell.time_off)
    elif cell.elsewhere:  # a visit booked with them at a site they left: taken, and not ours to describe
        inner = format_html('<span class="cal-off"{}>{}</span>', exact, BOOKED_ELSEWHERE)
    else:
        day = cell.local_day
        when = f"{day:%a} {day.day} {day:%b} {cell.label}" if week else cell.label
        # Heard as well as seen: the shading that marks working hours says nothing to a screen reader.
        outside = "" if cell.working else ", outside working hours"
        inner = format_html(
            '<a class="cal-free" href="{}?practitioner={}&amp;start_at={}"{}><span class="visually-hidden">Book {} with {}'
            '{}</span><span aria-hidden="true">+</span></a>',
            book_url,
            practitioner.pk,
            quote(cell.starts_at.isoformat(), safe=""),
            exact,
            when,
            practitioner.name,
            outside,
        )
    return format_html(
        '<td class="{}" data-date="{}" data-time="{}" data-practitioner="{}">{}</td>',
        classes,
        cell.local_day.isoformat(),
        cell.local_time,
        practitioner.pk,
        inner,
    )
