"""The Celery application.

With no broker configured (the embedded default) tasks are not sent anywhere;
the reminders subsystem then runs its own local dispatcher instead.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("clinic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
