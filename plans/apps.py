from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Treatment plans and recalls"

    def ready(self) -> None:
        from plans.recalls import recall_on_change
        from scheduler import notifications

        # After the reminders' own subscriber (installed before this app): a completion's outbox is settled first.
        notifications.subscribe(recall_on_change)
