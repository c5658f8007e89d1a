"""Delete Idempotency-Key records older than their 24-hour replay window (the beat runs it daily, as the task
api.purge_idempotency_keys; this command runs it by hand)."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from api.idempotency import idempotency_keys_purge


class Command(BaseCommand):
    help = "Delete expired Idempotency-Key records."

    def handle(self, *args, **options):
        deleted = idempotency_keys_purge(now=timezone.now())
        self.stdout.write(f"Deleted {deleted} expired idempotency key(s).")
