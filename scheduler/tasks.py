"""Celery task discovery for the scheduler app (autodiscover_tasks imports `<app>.tasks`)."""
from scheduler.reminders.tasks import dispatch_due, send_message

__all__ = ["dispatch_due", "send_message"]
