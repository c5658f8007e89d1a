"""The API's periodic work: Idempotency-Key records past their replay window deleted, daily (config/settings.py
CELERY_BEAT_SCHEDULE)."""

from celery import shared_task
from django.utils import timezone

from api.idempotency import idempotency_keys_purge


@shared_task(name="api.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    return idempotency_keys_purge(now=timezone.now())
