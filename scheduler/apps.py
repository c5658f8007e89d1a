from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduling rules"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from clinic.models import Condition, Medication, ProcedureType
        from scheduler.reminders.content import forget_forbidden_terms

        # No SMS may name a diagnosis, procedure or drug: a new catalogue name counts at once.
        for model in (ProcedureType, Medication, Condition):
            post_save.connect(forget_forbidden_terms, sender=model, dispatch_uid=f"sms-terms-save-{model.__name__}")
            post_delete.connect(forget_forbidden_terms, sender=model,
                                dispatch_uid=f"sms-terms-delete-{model.__name__}")
