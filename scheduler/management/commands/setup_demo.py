"""Load the default catalogue and rules and the two demo clinics (idempotent)."""
from django.core.management.base import BaseCommand
from django.utils import timezone

from scheduler import defaults
from scheduler.reminders.defaults import care_texts_load


class Command(BaseCommand):
    help = "Load the default catalogue, sourced rules and the demo clinics `demo` and `demo-ny`. Safe to re-run."

    def add_arguments(self, parser):
        parser.add_argument(
            "--staff-password",
            help="Also create demo staff users (reception, clinician, clinicadmin, and -ny variants) "
                 "with this password. For local demos only.",
        )
        parser.add_argument("--no-demo", action="store_true", help="Load only the catalogue, rules and care texts (production).")

    def handle(self, *args, **options):
        defaults.catalogue_load()
        created = defaults.rules_load()
        self.stdout.write(f"Catalogue loaded; {created} default rule(s) created.")
        self.stdout.write(f"{care_texts_load()} default reminder template(s) created.")
        if not options["no_demo"]:
            clinics = defaults.demo_load(today=timezone.localdate(), staff_password=options["staff_password"])
            self.stdout.write("Demo clinics: " + ", ".join(f"{c.code} ({c.timezone})" for c in clinics))
