"""Public endpoints for patients and the providers: unsubscribe links, inbound SMS (STOP), the SMS provider's
delivery reports, the e-mail provider's events, calendar feeds.

None needs a login: the unsubscribe link carries a signed token, the SMS provider signs its requests (or the
inbound URL carries SMS_INBOUND_TOKEN), the e-mail provider's carry ANYMAIL_WEBHOOK_SECRET, a feed's URL its token.
Bad input gets a clear 400/403 page, never a 500.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from anymail.exceptions import AnymailConfigurationError, AnymailError, AnymailWebhookValidationFailure
from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from core.errors import InvalidInput
from core.plain_text import storable
from core.redact import masked_logger
from reminders import channels, consent, feeds, pages, reports, tasks
from reminders.models import Channel, OptOutVia

log = masked_logger(__name__)

# Longer than any phone number or alphanumeric sender id a provider sends.
MAX_SENDER_LENGTH = 64


@csrf_exempt  # the signed token is the credential; mail clients POST here without a session (RFC 8058)
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        patient, channel = consent.unsubscribe_token_read(token)
    except InvalidInput as exc:
        return render(request, "reminders/link_invalid.html", {"message": exc.message}, status=400)
    context = {
        "clinic": patient.clinic,
        "clinic_name": patient.clinic.name,  # the clinic's look and contact details
        # What stops: the channel from every clinic of the organisation (the opt-out is the patient's, not a site's),
        # named as the SMS consent wording names them.
        "senders": consent.senders_named(patient.clinic),
        "channel": "e-mails" if channel == Channel.EMAIL else "text messages",
    }
    if request.method == "GET":
        # A GET only asks: link scanners and mail previews fetch links, and must not unsubscribe anyone.
        return pages.with_clinic_look(render(request, "reminders/unsubscribe.html", context), patient.clinic)
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    consent.patient_opt_out(
        patient=patient,
        channel=channel,
        now=timezone.now(),
        via=OptOutVia.LIST_UNSUBSCRIBE if one_click else OptOutVia.EMAIL_LINK,
    )
    return pages.with_clinic_look(render(request, "reminders/unsubscribe_done.html", context), patient.clinic)


@csrf_exempt  # called by the SMS provider, authenticated by its signature
@require_POST
def sms_inbound(request: HttpRequest) -> HttpResponse:
    backend = _sms_backend()
    if backend is None:
        return _sms_not_set_up()
    params = {key: request.POST.get(key) for key in request.POST}
    # Signatures cover the URL the provider called; behind a TLS-terminating proxy set SMS_INBOUND_URL to it.
    url = settings.SMS_INBOUND_URL or request.build_absolute_uri()
    if not backend.verify_inbound(url=url, params=params, headers=request.headers, query=request.GET):
        return HttpResponse("Signature or token missing or wrong.", status=403, content_type="text/plain")
    sender, body = params.get("From", ""), params.get("Body", "")
    if not sender:
        return HttpResponse("From is required.", status=400, content_type="text/plain")
    if not _plausible_sender(sender):
        # A NUL byte would reach PostgreSQL (which refuses it in text) in the look-up by phone.
        return HttpResponse("From must be a phone number.", status=400, content_type="text/plain")
    reports.sms_reply_heard(from_number=sender, body=body, now=timezone.now())
    # An empty TwiML answer: the provider sends its own opt-out confirmation to the patient.
    return HttpResponse('<?xml version="1.0" encoding="UTF-8"?><Response></Response>', content_type="application/xml")


def _sms_backend() -> channels.BaseSmsBackend | None:
    """The SMS backend, or None (logged) where it is set up wrongly here (Twilio without its account or sender)."""
    try:
        return channels.sms_backend()
    except channels.PermanentSendError:
        log.exception("the SMS backend is not set up (see docs/reminders.md)")
        return None


def _sms_not_set_up() -> HttpResponse:
    return HttpResponse("SMS is not set up here.", status=503, content_type="text/plain")


def _status_callback_url(request: HttpRequest) -> str:
    """The URL the provider called, as it signed it: SMS_STATUS_CALLBACK_URL (the public one, behind a proxy) with
    the query the call carried (the row it names, added to each text's callback), else what Django sees."""
    if not settings.SMS_STATUS_CALLBACK_URL:
        return request.build_absolute_uri()
    base, query = settings.SMS_STATUS_CALLBACK_URL.split("?", 1)[0], request.META.get("QUERY_STRING", "")
    return f"{base}?{query}" if query else base


@csrf_exempt  # called by the SMS provider, authenticated by its signature
@require_POST
def sms_status(request: HttpRequest) -> HttpResponse:
    """The SMS provider's delivery report on a text it had accepted (Twilio's status callback, asked for with each
    text where SMS_STATUS_CALLBACK_URL is set, or set on a Messaging Service): one it could not deliver is marked
    failed, and a refusal after the patient's STOP to the provider turns their texts off
    (reports.delivery_reported). 404 where the provider sends no reports, 503 where it is set up wrongly here; 202
    for one the workers will record (the database did not answer now), 503 if they cannot be reached either."""
    if not channels.sms_backend_sends_reports():
        raise Http404("The SMS provider set up here sends no delivery reports.")
    backend = _sms_backend()
    if backend is None:
        return _sms_not_set_up()
    params = {key: request.POST.get(key) for key in request.POST}
    url = _status_callback_url(request)
    if not backend.verify_inbound(url=url, params=params, headers=request.headers, query=request.GET):
        return HttpResponse("Signature missing or wrong.", status=403, content_type="text/plain")
    report = backend.delivery_report(params, request.GET)
    if report is None:
        return HttpResponse("Not a delivery report.", status=400, content_type="text/plain")
    received_at = timezone.now()
    try:
        reports.delivery_reported(channel=Channel.SMS, report=report, now=received_at)
    except DatabaseError:
        # Twilio does not send a report again on an error answer: the workers record it once the database answers
        # (as of now); without them, the log is what is left of it.
        task = tasks.delivery_report_later(channel=Channel.SMS, report=report, received_at=received_at)
        if task:
            log.warning("an SMS delivery report could not be recorded now; %s records it: %s", task, report)
            return HttpResponse("Accepted; recorded shortly.", status=202, content_type="text/plain")
        log.exception("an SMS delivery report was read but not recorded: %s", report)
        return HttpResponse("Not recorded.", status=503, content_type="text/plain")
    return HttpResponse(status=204)


class EmailEventNotRecorded(Exception):
    """Reading the event went well; recording it did not (the database, a bug): the provider must send it again."""


def email_events_view(provider: str, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`provider`'s event webhook (anymail's tracking view), answered only where `ANYMAIL_WEBHOOK_SECRET` is set
    and that provider sends this service's e-mail (`EMAIL_BACKEND` is its anymail backend): without the secret
    anymail takes events from anyone (it only warns), and anyone could switch a patient's e-mails off; the other
    providers' webhooks are not there. An event that cannot be read is a 400; one read but not recorded, or a
    provider set up wrongly here (its signing key missing), a 503, so the provider sends it again."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.ANYMAIL.get("WEBHOOK_SECRET") or not settings.EMAIL_BACKEND.startswith(
            f"anymail.backends.{provider}."
        ):
            raise Http404("This e-mail provider's events are not set up here (ANYMAIL_WEBHOOK_SECRET, EMAIL_BACKEND).")
        try:
            return view(request, *args, **kwargs)
        except EmailEventNotRecorded:
            log.exception("an e-mail provider's event was read but not recorded; the provider will send it again")
            return HttpResponse("Not recorded; send it again.", status=503, content_type="text/plain")
        except AnymailConfigurationError:
            log.exception("the %s event webhook is not set up right (see docs/reminders.md)", provider)
            return HttpResponse("Not set up; send it again later.", status=503, content_type="text/plain")
        except AnymailWebhookValidationFailure:
            raise  # a 400, logged as a security event by Django
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, AnymailError) as exc:
            # Not JSON (nested past the parser's depth included), or not the provider's shape: its parser fails on
            # it.
            log.warning("an e-mail provider's event could not be read: %r", exc)
            return HttpResponse("The event could not be read.", status=400, content_type="text/plain")

    return csrf_exempt(guarded)  # called by the provider, authenticated by the webhook secret


def email_event(sender, event, esp_name: str, **kwargs) -> None:
    """anymail's `tracking` signal (connected in RemindersConfig.ready): a spam complaint or an unsubscribe at the
    provider turns the patient's e-mails off (consent.email_provider_stopped); a bounce or a refusal of an e-mail
    sent from here marks it failed (reports.delivery_reported); other events change nothing."""
    # Postmark's bounce records include a receiving server's spam filter (SpamNotification), which anymail calls a
    # complaint: not the patient's.
    postmark_bounce = (
        esp_name == "Postmark" and isinstance(event.esp_event, dict) and event.esp_event.get("RecordType") == "Bounce"
    )
    try:
        # An address or a message id no database can store (a NUL, a lone surrogate) is no patient's nor any e-mail's
        # sent from here: nothing to record, and no error (sent again, it would fail again; in a batch, the events
        # beside it would be lost with it). The provider's words are cleaned where they are kept
        # (channels.email_delivery_report).
        if not postmark_bounce and storable(event.recipient):
            consent.email_provider_stopped(
                event_type=event.event_type,
                recipient=event.recipient,
                provider=esp_name,
                happened_at=event.timestamp,
                now=timezone.now(),
            )
        report = channels.email_delivery_report(event, esp_name)
        if report is not None and storable(report.provider_id):
            reports.delivery_reported(channel=Channel.EMAIL, report=report, now=timezone.now())
    except Exception as exc:
        raise EmailEventNotRecorded from exc


def _plausible_sender(sender: str) -> bool:
    """Printable (no NUL or other control characters) and of a sender's length."""
    return len(sender) <= MAX_SENDER_LENGTH and sender.isprintable()


@require_http_methods(["GET", "HEAD"])
def calendar_feed(request: HttpRequest, token: str) -> HttpResponse:
    """A private iCalendar feed; the token in the URL is the credential. Unknown, revoked, or a switched-off practitioner's: 404."""
    feed = feeds.calendar_feed_for_token(token)
    if feed is None:
        raise Http404("No such calendar feed.")
    response = HttpResponse(
        feeds.calendar_feed_ics(feed=feed, now=timezone.now()), content_type="text/calendar; charset=utf-8"
    )
    response["Content-Disposition"] = 'inline; filename="appointments.ics"'
    response["Cache-Control"] = "private, no-store"  # patient data; calendar apps poll it anyway
    response["Referrer-Policy"] = "no-referrer"  # the URL is the secret
    response["X-Robots-Tag"] = "noindex"
    return response
