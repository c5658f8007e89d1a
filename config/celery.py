"""The Celery application.

With no broker configured (the embedded default) tasks are not sent anywhere;
the reminders subsystem then runs its own local dispatcher instead.
"""

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("clinic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_connections(sender=None, **kwargs) -> None:
    """Connections are reused across tasks (CELERY_DB_REUSE_MAX); drop broken or expired ones,
    as Django does around each request. Not for an eager task: it runs inside its caller's
    transaction, whose connection must stay open (Celery's own fix-up skips those too)."""
    from django.db import close_old_connections as close

    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    close()


@after_setup_logger.connect
@after_setup_task_logger.connect
def mask_contacts(logger=None, **kwargs) -> None:
    """Celery replaces the root logger's handlers with its own: they mask contacts too, as Django's do
    (settings.LOGGING, core.redact)."""
    from core.redact import mask

    for handler in getattr(logger, "handlers", []):
        mask(handler)
