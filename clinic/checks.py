"""Database checks of what the clinics' own settings need: `manage.py check --database default` (and `migrate`).

A clinic's time zone is checked by the admin's form; one written past it (a script, a shell), or one a later tzdata
no longer reads, is stored, and every page and message of the clinic's visits then fails. A database constraint
cannot know the zone list, so a deploy's check names each such clinic before a page fails.
"""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.core.exceptions import ValidationError
from django.db import connections

from clinic.models import Clinic, validate_timezone


@register(Tags.database)
def clinic_time_zones(app_configs=None, databases=None, **kwargs) -> list[Error]:
    found: list[Error] = []
    for alias in databases or ():
        if Clinic._meta.db_table not in connections[alias].introspection.table_names():
            continue  # `migrate` checks before it migrates: a new database has no clinics yet
        for code, zone in Clinic.objects.using(alias).order_by("code").values_list("code", "timezone"):
            try:
                validate_timezone(zone)
            except ValidationError:
                found.append(
                    Error(
                        f"Clinic {code} ({alias}) has the time zone {zone!r}, which this server cannot read: every "
                        "page and message of its visits fails.",
                        hint="Set an IANA zone (e.g. Europe/London) in the admin, or install the tzdata that has it.",
                        obj=code,
                        id="clinic.E001",
                    )
                )
    return found
