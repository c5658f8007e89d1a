"""Show the outbox: counts by status and channel, what is overdue or due soon, what failed, what was dropped as
too late."""

import argparse
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from clinic.models import Clinic
from core.plain_text import text_argument
from core.redact import contacts_masked
from reminders import fit, selectors

MAX_HOURS = 366 * 24  # a year ahead; further is no longer "due soon" (and far past it, timedelta overflows)
MAX_LIMIT = 1000


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`; anything else is a usage error naming the option."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid whole number: {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {number}")
        return number

    return parse


def _row(message) -> str:
    clinic = message.appointment.clinic
    local = message.due_at.astimezone(clinic.tz)
    what = message.event if message.channel == "webhook" else message.kind
    line = (
        f"  {local:%Y-%m-%d %H:%M} {clinic.code:<10} {what:<24} {message.channel:<8} {message.status:<9} "
        f"attempts={message.attempts} id={message.pk}"
    )
    # What goes where logs go (cron mail, a monitoring job): the provider's words with the patient's contacts masked,
    # as the log line of the same failure has them (the admin keeps them whole, for staff).
    return line + (f"\n      {contacts_masked(message.last_error)}" if message.last_error else "")


class Command(BaseCommand):
    help = "What the reminder outbox holds: due, sent, failed (times in each clinic's zone)."

    def add_arguments(self, parser):
        parser.add_argument("--clinic", type=text_argument, help="Only this clinic (its code).")
        parser.add_argument(
            "--hours",
            type=_whole_number(1, MAX_HOURS),
            default=24,
            help=f"How far ahead 'due soon' looks (default 24, at most {MAX_HOURS}).",
        )
        parser.add_argument(
            "--limit",
            type=_whole_number(1, MAX_LIMIT),
            default=20,
            help=f"Rows listed per section (default 20, at most {MAX_LIMIT}).",
        )

    def handle(self, *args, **options):
        # A typo must not read as an empty (all's well) outbox.
        # Given but blank (a script's `--clinic "$CLINIC"` with the variable unset) is a code no clinic has, not "all".
        if options["clinic"] is not None and not Clinic.objects.filter(code=options["clinic"]).exists():
            raise CommandError(f"No clinic with code {options['clinic']!r}.")
        summary = selectors.outbox_summary(
            now=timezone.now(),
            clinic_code=options["clinic"],
            horizon=timedelta(hours=options["hours"]),
            limit=options["limit"],
        )
        self.stdout.write("Outbox by status and channel:")
        if not summary["counts"]:
            self.stdout.write("  (empty)")
        for status, by_channel in sorted(summary["counts"].items()):
            self.stdout.write(f"  {status:<10} " + ", ".join(f"{c}: {n}" for c, n in sorted(by_channel.items())))
        self.stdout.write(f"Held until clearance: {summary['held']}")
        self.stdout.write(
            f"Claimed, not yet sent: {summary['in_flight']} (a claim takes at most REMINDERS_MAX_IN_FLIGHT "
            f"{settings.REMINDERS_MAX_IN_FLIGHT} less these)"
        )
        waiting = summary["waiting"]
        if waiting["count"]:
            self.stdout.write(
                f"Due, waiting for a claim: {waiting['count']}, the oldest due "
                f"{int(waiting['waited'].total_seconds() // 60)} min ago"
                + (" (the dispatcher is behind, or not running)" if waiting["behind"] else "")
            )
        else:
            self.stdout.write("Due, waiting for a claim: 0")
        for title, key in (
            ("Overdue (pending or claimed, past due):", "overdue"),
            (f"Due in the next {options['hours']} h:", "due_soon"),
            ("Failed:", "failed"),
            (
                f"Dropped as too late in the last {options['hours']} h (their moment passed before they could go):",
                "too_late",
            ),
        ):
            self.stdout.write(title)
            rows = summary[key]
            self.stdout.write("\n".join(_row(m) for m in rows) if rows else "  (none)")
        # Saved before the texts were checked against the clinics' names (reminders.fit), a clinic's name or a
        # template may still stop texts going: said here, where an operator looks, before the failures pile up.
        self.stdout.write("Clinics whose name stops texts going:")
        clinics = Clinic.objects.order_by("code")
        if options["clinic"] is not None:
            clinics = clinics.filter(code=options["clinic"])
        found = list(fit.clinics_sms_problems(clinics))
        for clinic, problems in found:
            for message in (m for messages in problems.values() for m in messages):
                self.stdout.write(f"  {clinic.code:<10} {message}")
        if not found:
            self.stdout.write("  (none)")
        self.stdout.write("Texts that cannot go for any clinic:")
        broken = list(fit.templates_own_problems())
        for template, problem in broken:
            self.stdout.write(f"  “{template.name}” (id {template.pk}): {problem}")
        if not broken:
            self.stdout.write("  (none)")
