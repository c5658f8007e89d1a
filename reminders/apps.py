from django.apps import AppConfig


class RemindersConfig(AppConfig):
    name = "reminders"
    verbose_name = "Reminders, outbox and webhooks"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from clinic.models import Condition, Medication, ProcedureType
        from reminders.services import outbox_on_change
        from reminders.texts import forget_forbidden_terms
        from scheduler import notifications

        # Booking changes reach the outbox through the scheduler's one seam, inside their transaction.
        notifications.subscribe(outbox_on_change)
        # No SMS may name a diagnosis, procedure or drug: a new catalogue name counts at once.
        for model in (ProcedureType, Medication, Condition):
            post_save.connect(forget_forbidden_terms, sender=model, dispatch_uid=f"sms-terms-save-{model.__name__}")
            post_delete.connect(forget_forbidden_terms, sender=model, dispatch_uid=f"sms-terms-delete-{model.__name__}")
