"""One patient's whole story, as they receive it: every e-mail and text, through the real dispatcher
and the file backends, checked for its time, channel, order and content (issue 16, "done when").

Booked Wednesday 4 March 11:00; moved to Thursday 5 March 11:00 before the pre-care window; briefed
the day before; receptionist tries times inside the window and settles back (nothing sent); moved
for real to 14:00 (told at once after the grace period); completed; a second booking cancelled.
The e-mails are then opened in headless Chromium at 390 px: none is wider than the phone.
"""

import email
import json
import re
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from reminders.dispatch import dispatch_local
from scheduler.booking import appointment_cancel, appointment_complete, appointment_reschedule
from tests.reminders.conftest import CLINICIAN, RECEPTION, book, london


@pytest.fixture
def outboxes(settings, tmp_path):
    settings.SMS_BACKEND = "reminders.channels.FileSmsBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    return tmp_path


def texts(tmp: Path) -> list[str]:
    path = tmp / "sms.jsonl"
    return [json.loads(line)["body"] for line in path.read_text().splitlines()] if path.exists() else []


def emails(tmp: Path) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((tmp / "mail").glob("*.log"), key=lambda p: p.stat().st_mtime_ns):
        for chunk in path.read_bytes().split(b"-" * 79 + b"\n"):
            if chunk.strip():
                found.append(email.message_from_bytes(chunk, policy=policy.default))
    return found


def body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def run(at):
    with time_machine.travel(at, tick=False):
        return dispatch_local(now=timezone.now())


def act(at, fn, **kwargs):
    with time_machine.travel(at, tick=False):
        return fn(now=timezone.now(), **kwargs)


def new(seen: list, now: list) -> list:
    added = now[len(seen) :]
    seen[:] = now
    return added


def test_one_patients_story_as_they_receive_it(outboxes, patient, practitioner, now):
    seen_sms, seen_mail = [], []

    def fresh():
        return new(seen_sms, texts(outboxes)), [(m["Subject"], body(m)) for m in new(seen_mail, emails(outboxes))]

    # Monday 09:00: booked for Wednesday 11:00.
    appointment = book(patient, "microneedling", london(2026, 3, 4, 11), now)
    run(now)
    sms, mails = fresh()
    assert [s.split(". ")[0] for s in sms] == ["Bloom Clinic: your appointment is booked for Wed 4 Mar, 11:00 (GMT)"]
    assert [m[0] for m in mails] == ["Your appointment at Bloom Clinic on Wed 4 Mar"]
    assert "/my/" in sms[0] and "/my/" in mails[0][1]

    # Monday 10:00: moved to Thursday 11:00, well before any pre-care; told after the grace period.
    appointment = act(
        london(2026, 3, 2, 10),
        appointment_reschedule,
        appointment=appointment,
        start_at=london(2026, 3, 5, 11),
        actor=RECEPTION,
    ).appointment
    run(london(2026, 3, 2, 10, 1))
    assert fresh() == ([], [])  # not yet: the receptionist may still change it
    run(london(2026, 3, 2, 10, 6))
    sms, mails = fresh()
    assert sms == [
        "Bloom Clinic: your appointment has moved to Thu 5 Mar, 11:00 (GMT) (it was Wed 4 Mar, 11:00 (GMT))."
    ]
    assert [m[0] for m in mails] == ["Your appointment has moved to Thu 5 Mar"]

    # Nothing happens at Wednesday's old pre-care time.
    run(london(2026, 3, 3, 11))
    assert fresh() == ([], [])

    # Wednesday 11:00: the reminder and the pre-care for Thursday, one e-mail and one text.
    run(london(2026, 3, 4, 11))
    sms, mails = fresh()
    assert len(sms) == 1 and len(mails) == 1
    assert re.findall(r"Thu 5 Mar, \d\d:\d\d", sms[0]) == ["Thu 5 Mar, 11:00", "Thu 5 Mar, 11:00"]
    assert mails[0][0] == "Reminder: your appointment tomorrow at 11:00"
    assert "Preparing for your visit on Thu 5 Mar" in mails[0][1] and "Stop topical retinoids" in mails[0][1]

    # Wednesday 12:00-12:02: trying times inside the pre-care window, settling back; dispatcher running.
    for minute, hour in enumerate([10, 9, 11]):
        appointment = act(
            london(2026, 3, 4, 12, minute),
            appointment_reschedule,
            appointment=appointment,
            start_at=london(2026, 3, 5, hour),
            actor=RECEPTION,
        ).appointment
        run(london(2026, 3, 4, 12, minute) + timedelta(seconds=30))
    run(london(2026, 3, 4, 12, 30))
    assert fresh() == ([], [])

    # Wednesday 13:00: moved for real to 14:00; told after the grace period; briefed again at 14:00 (24 h before).
    appointment = act(
        london(2026, 3, 4, 13),
        appointment_reschedule,
        appointment=appointment,
        start_at=london(2026, 3, 5, 14),
        actor=RECEPTION,
    ).appointment
    run(london(2026, 3, 4, 13, 6))
    sms, mails = fresh()
    assert sms == [
        "Bloom Clinic: your appointment has moved to Thu 5 Mar, 14:00 (GMT) (it was Thu 5 Mar, 11:00 (GMT))."
    ]
    assert [m[0] for m in mails] == ["Your appointment has moved to Thu 5 Mar"] and "14:00" in mails[0][1]
    run(london(2026, 3, 4, 14))
    sms, mails = fresh()
    assert len(sms) == 1 and re.findall(r"Thu 5 Mar, \d\d:\d\d", sms[0]) == ["Thu 5 Mar, 14:00", "Thu 5 Mar, 14:00"]
    assert [m[0] for m in mails] == ["Reminder: your appointment tomorrow at 14:00"]
    assert "Preparing for your visit on Thu 5 Mar" in mails[0][1] and "11:00" not in mails[0][1]

    # Thursday 14:45: completed; aftercare at once, +48 h and +7 days later (and nothing more about the visit).
    appointment = act(london(2026, 3, 5, 14, 45), appointment_complete, appointment=appointment, actor=CLINICIAN)
    run(london(2026, 3, 5, 14, 45))
    sms, mails = fresh()
    assert [m[0] for m in mails] == ["Aftercare for your treatment at Bloom Clinic"]
    assert "aftercare" in sms[0] and "Microneedling" not in sms[0]
    run(london(2026, 3, 7, 14, 45))
    sms, mails = fresh()
    assert [m[0] for m in mails] == ["You may wear makeup again"] and len(sms) == 1
    run(london(2026, 3, 12, 14, 45))
    sms, mails = fresh()
    assert [m[0] for m in mails] == ["Your first week of aftercare is over"] and len(sms) == 1

    # A second booking, cancelled: confirmed, then told of the cancellation with a calendar CANCEL.
    second = act(london(2026, 3, 12, 15), book, patient=patient, code="botox", when=london(2026, 4, 8, 10))
    run(london(2026, 3, 12, 15))
    act(london(2026, 3, 12, 16), appointment_cancel, appointment=second, actor=RECEPTION)
    run(london(2026, 3, 12, 16))
    sms, mails = fresh()
    assert [m[0] for m in mails] == [
        "Your appointment at Bloom Clinic on Wed 8 Apr",
        "Your appointment on Wed 8 Apr is cancelled",
    ]
    assert sms[-1].startswith("Bloom Clinic: your appointment on Wed 8 Apr, 10:00 (BST) is cancelled")
    cancel = emails(outboxes)[-1]
    [ics] = [part for part in cancel.iter_attachments() if part.get_content_type() == "text/calendar"]
    assert ics.get_param("method") == "CANCEL"


@pytest.mark.browser
def test_every_email_fits_a_phone_in_chromium(outboxes, patient, practitioner, now, tmp_path):
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    appointment = book(patient, "microneedling", london(2026, 3, 4, 11), now)
    run(now)
    run(london(2026, 3, 3, 11))
    act(london(2026, 3, 4, 11, 45), appointment_complete, appointment=appointment, actor=CLINICIAN)
    for at in (london(2026, 3, 4, 11, 45), london(2026, 3, 6, 11, 45), london(2026, 3, 11, 11, 45)):
        run(at)
    pages = [html(m) for m in emails(outboxes)]
    assert len(pages) >= 5

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
            tab = context.new_page()
            for index, page in enumerate(pages):
                tab.set_content(page)
                widths = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert widths[0] <= widths[1], f"e-mail {index} is {widths[0]}px wide on a {widths[1]}px phone"
                assert tab.locator('meta[name="viewport"]').count() == 1
        finally:
            chromium.close()
