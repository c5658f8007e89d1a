from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduling rules"

    def ready(self) -> None:
        from clinic import record_changes
        from scheduler.recheck import on_record_changed

        # A change to a patient's record re-checks their booked appointments in the same transaction.
        record_changes.subscribe(on_record_changed)
