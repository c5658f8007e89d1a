from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Treatment plans and recalls"

    def ready(self) -> None:
        from clinic import record_changes
        from plans.recalls import recall_on_change, recalls_on_record_changed
        from scheduler import notifications

        # After the reminders' own subscriber (installed before this app): a completion's outbox is settled first.
        notifications.subscribe(recall_on_change)
        # A merge, a treatment recorded as done elsewhere: the recalls they settle close (one per procedure).
        record_changes.subscribe(recalls_on_record_changed)
