"""A rule edit starts a re-check of every patient it may affect (of the rule's organisation only, when it
has one), once the edit has committed."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from scheduler import recheck, tasks


def remember_procedures(sender, instance, raw: bool = False, **kwargs) -> None:
    """pre_save receiver: the procedures the rule named before this edit. A rule moved from one procedure to
    another must re-check the bookings it may stop blocking too (they stayed needs_review for good)."""
    if raw:
        return
    stored = sender.objects.filter(pk=instance.pk).first() if instance.pk else None
    instance._procedures_before = recheck.procedures_of_rule(stored) if stored is not None else []


def on_rule_changed(sender, instance, raw: bool = False, **kwargs) -> None:
    """post_save / post_delete receiver for IntervalRule and ContraindicationRule."""
    if raw:  # loaddata: nothing is booked against a fixture being loaded
        return
    procedures = sorted(set(recheck.procedures_of_rule(instance)) | set(getattr(instance, "_procedures_before", ())))
    organisation_id = instance.organisation_id  # None: a default, which every organisation's book may use
    cause = f"rule changed: {instance}"

    def start() -> None:
        run = recheck.recheck_run_start(
            cause=cause, procedures=procedures, now=timezone.now(), organisation_id=organisation_id
        )
        if run is not None:
            tasks.start_run(str(run.pk), in_request=True)

    transaction.on_commit(start)
