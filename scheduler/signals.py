"""A rule edit starts a re-check of every patient it may affect (of the rule's organisation only, when it
has one), once the edit has committed."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from scheduler import recheck, tasks


def on_rule_changed(sender, instance, raw: bool = False, **kwargs) -> None:
    """post_save / post_delete receiver for IntervalRule and ContraindicationRule."""
    if raw:  # loaddata: nothing is booked against a fixture being loaded
        return
    procedures = recheck.procedures_of_rule(instance)
    organisation_id = instance.organisation_id  # None: a default, which every organisation's book may use
    cause = f"rule changed: {instance}"

    def start() -> None:
        run = recheck.recheck_run_start(
            cause=cause, procedures=procedures, now=timezone.now(), organisation_id=organisation_id
        )
        if run is not None:
            tasks.start_run(str(run.pk))

    transaction.on_commit(start)
