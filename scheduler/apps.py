from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduling rules"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save, pre_save

        from clinic import merging, record_changes
        from scheduler import lifecycle
        from scheduler.models import ContraindicationRule, IntervalRule
        from scheduler.recheck import appointments_warnings, flagged_appointments_recheck, on_record_changed
        from scheduler.signals import on_rule_changed, remember_procedures

        # A change to a patient's record re-checks their booked appointments in the same transaction.
        record_changes.subscribe(on_record_changed)
        # A merge records the warnings its two records bring together (they change no status): the rules find them.
        merging.subscribe_warnings(appointments_warnings)
        # The bookings a merge moves to the survivor are audited and announced (their patient changed).
        merging.subscribe_moved(lifecycle.appointments_merged)
        # A booking cancelled, moved or missed re-checks the patient's bookings it flagged, in the same transaction.
        lifecycle.subscribe_freed(flagged_appointments_recheck)
        # A rule edit re-checks every patient it may affect, in chunks, after it commits.
        for model in (IntervalRule, ContraindicationRule):
            pre_save.connect(remember_procedures, sender=model, dispatch_uid=f"recheck-before-{model.__name__}")
            post_save.connect(on_rule_changed, sender=model, dispatch_uid=f"recheck-save-{model.__name__}")
            post_delete.connect(on_rule_changed, sender=model, dispatch_uid=f"recheck-delete-{model.__name__}")
