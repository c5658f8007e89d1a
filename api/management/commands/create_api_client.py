"""Create an API client (a booking platform) and print its key, once, alone on the last line."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from clinic.models import ApiClient, Clinic, Organisation
from core.plain_text import text_argument


class Command(BaseCommand):
    help = (
        "Create an API client scoped to whole organisations (--organisation, every clinic now and later) "
        "and/or single clinics (--clinic); prints its key (stored only hashed) on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", type=text_argument, help="The booking platform's name (unique).")
        parser.add_argument(
            "--clinic",
            action="append",
            type=text_argument,
            default=[],
            metavar="CODE",
            help="Clinic code the client may act at; repeat for more.",
        )
        parser.add_argument(
            "--organisation",
            action="append",
            type=text_argument,
            default=[],
            metavar="CODE",
            help="Organisation code: the client may act at every clinic of it, now and later; repeat for more.",
        )
        parser.add_argument(
            "--clinical",
            action="store_true",
            help="Grant the clinician's right (complete appointments, clear contraindications).",
        )

    def handle(self, *args, name, clinic, organisation, clinical, **options):
        # Checked before anything is saved: the column would refuse a long name on PostgreSQL (a DataError
        # traceback) and SQLite would store it; a blank one is what the admin refuses. Stripped as the admin does.
        name = name.strip()
        longest = ApiClient._meta.get_field("name").max_length
        if not name:
            raise CommandError("Give the API client a name (it is blank).")
        if len(name) > longest:
            raise CommandError(f"An API client's name has at most {longest} characters; this one has {len(name)}.")
        if not clinic and not organisation:
            raise CommandError("Grant at least one --clinic or --organisation.")
        codes = list(dict.fromkeys(clinic))
        clinics = list(Clinic.objects.filter(code__in=codes))
        missing = sorted(set(codes) - {c.code for c in clinics})
        if missing:
            raise CommandError(f"No clinic with code(s): {', '.join(missing)}.")
        org_codes = list(dict.fromkeys(organisation))
        organisations = list(Organisation.objects.filter(code__in=org_codes))
        missing = sorted(set(org_codes) - {o.code for o in organisations})
        if missing:
            raise CommandError(f"No organisation with code(s): {', '.join(missing)}.")
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"An API client named {name!r} already exists; rotate its key in the admin.")
        with transaction.atomic():
            client = ApiClient(name=name, clinical=clinical)
            key = client.set_new_key()
            client.save()
            client.clinics.set(clinics)
            client.organisations.set(organisations)
        granted = [f"organisation {code}" for code in org_codes] + codes
        self.stdout.write(
            f"Created API client {name!r} for {', '.join(granted)}"
            f"{' with the clinician right' if clinical else ''}. "
            "The key is shown once; store it now:"
        )
        self.stdout.write(key)
