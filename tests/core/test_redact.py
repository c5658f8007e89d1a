"""core.redact: what a provider quotes of a recipient is masked in what goes to the logs; nothing else is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.redact import contacts_masked


@pytest.mark.parametrize(
    ("quoted", "masked"),
    [
        (
            "recipient refused: {'zelphine.q+clinic@mail.example.co.uk': (550, b'5.1.1 unknown user')}",
            "recipient refused: {'<e-mail address>': (550, b'5.1.1 unknown user')}",
        ),
        (
            "Twilio 21211: The 'To' number +447700900123 is not a valid phone number.",
            "Twilio 21211: The 'To' number <phone number> is not a valid phone number.",
        ),
        (
            "bounced: 550 5.1.1 <ann@example.com>: mailbox unavailable",
            "bounced: 550 5.1.1 <<e-mail address>>: mailbox unavailable",
        ),
        ("To +1 (415) 555-0100 failed", "To <phone number> failed"),
    ],
)
def test_a_quoted_recipient_is_masked(quoted, masked):
    assert contacts_masked(quoted) == masked


@pytest.mark.parametrize(
    "kept",
    [
        "connection refused (errno 111) after 10.0 s",
        "at 2026-03-10T10:00:00+00:00 for 54ab8f6e-27be-4714-843e-fc449909e6dc",
        "HTTP 503 from https://api.twilio.com/2010-04-01/Accounts",
        "code 21610: unsubscribed recipient",
    ],
)
def test_words_without_a_contact_are_left_alone(kept):
    assert contacts_masked(kept) == kept


@given(
    user=st.from_regex(r"[a-z][a-z0-9._+-]{0,20}", fullmatch=True),
    domain=st.from_regex(r"[a-z][a-z0-9-]{0,10}\.[a-z]{2,6}", fullmatch=True),
    digits=st.from_regex(r"[1-9][0-9]{7,13}", fullmatch=True),
    before=st.text(alphabet=" :'<({[", max_size=3),
)
def test_no_address_or_number_survives(user, domain, digits, before):
    text = f"refused{before}{user}@{domain} and{before}+{digits}."
    masked = contacts_masked(text)
    assert f"{user}@{domain}" not in masked and digits not in masked


def test_a_masked_logger_masks_the_message_and_the_traceback_for_every_handler(caplog):
    import logging

    from core.redact import masked_logger

    log = masked_logger("tests.redact.module")
    assert masked_logger("tests.redact.module") is log and len(log.filters) == 1  # asked twice: one filter
    try:
        raise ValueError("recipient refused: ann@example.com")
    except ValueError:
        with caplog.at_level(logging.WARNING, logger="tests.redact.module"):
            log.exception("send to %s failed: %s", "+447700900123", "ann@example.com")
    [record] = caplog.records
    assert record.getMessage() == "send to <phone number> failed: <e-mail address>"
    written = logging.Formatter().format(record)
    assert "ann@example.com" not in written and "+447700900123" not in written
    assert "ValueError: recipient refused: <e-mail address>" in written


def test_the_console_handler_masks_what_any_module_logs(capsys):
    """settings.LOGGING puts the filter on the console handler: a module that does not mask its own logger is
    masked there."""
    import logging

    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    record = logging.LogRecord("elsewhere", logging.ERROR, __file__, 1, "no reply from %s", ("bob@example.org",), None)
    assert handler.filter(record)
    assert record.getMessage() == "no reply from <e-mail address>"


def test_a_percent_encoded_contact_in_a_logged_address_is_masked():
    """gunicorn's access log writes the address as requested: a FHIR search by e-mail or phone arrives encoded."""
    line = '"GET /fhir/r4/Patient?email=ann%40example.com&telephone=%2B44%207700%20900123 HTTP/1.1" 200'
    masked = contacts_masked(line)
    assert "ann" not in masked and "900123" not in masked
    assert masked == '"GET /fhir/r4/Patient?email=<e-mail address>&telephone=<phone number> HTTP/1.1" 200'


def test_a_long_line_without_a_contact_is_kept_and_masking_stays_bounded():
    """Every part of the patterns is bounded: a long run of what could begin an address is read once per start."""
    line = "a" * 20000 + " " + "1." * 5000
    assert contacts_masked(line) == line


def test_a_number_a_form_encoded_and_a_long_spaced_one_are_masked_whole():
    assert contacts_masked("telephone=%2B44+7700+900123&x=1") == "telephone=<phone number>&x=1"
    assert contacts_masked("to +4 4 7 7 0 0 9 0 0 1 2 3 4 5 6 7 8 9 0 1.") == "to <phone number>."


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("Bad Request: /my/Q2x.a1B2c3:9zYw/move/confirm/", "Bad Request: /my/<link>/move/confirm/"),
        ('"GET /reminders/calendar/k7_Fq2.ics HTTP/1.1" 200', '"GET /reminders/calendar/<link> HTTP/1.1" 200'),
        ("Forbidden (CSRF): /reminders/unsubscribe/abc.def/", "Forbidden (CSRF): /reminders/unsubscribe/<link>/"),
        ('"https://clinic.example/my/tok.en/" "Mozilla"', '"https://clinic.example/my/<link>/" "Mozilla"'),
    ],
)
def test_a_link_that_is_its_own_credential_is_logged_without_its_token(line, masked):
    """A patient's page, an unsubscribe link and a calendar feed are their own credential: Django's request log and
    gunicorn's access log (a Referer too) write their paths, the token left out."""
    assert contacts_masked(line) == masked


@pytest.mark.parametrize("kept", ["/my/", "GET /api/v1/patients/ 200", "/clinic/london/my-day/"])
def test_paths_without_a_link_token_are_left_alone(kept):
    assert contacts_masked(kept) == kept
