"""What the API keeps of its own: the Idempotency-Key replay store.

API clients (the callers themselves) live in clinic.models beside staff memberships:
they are who may act on a clinic's data, which the layers below need to know too.
"""

from django.db import models


class IdempotencyKey(models.Model):
    """A creating POST's Idempotency-Key and the response it got, replayed for 24 hours.

    The row is inserted in the same transaction as the work it guards and
    stored with the response before that transaction commits, so a row is
    either absent (the work never happened, or rolled back) or complete. A
    concurrent duplicate waits on the unique constraint until the first
    commits, then replays its response: two identical requests at once create
    one thing, and a crash mid-request leaves no stale "in progress" row.
    """

    # "client:<uuid>" or "user:<pk>": keys are scoped per caller.
    owner = models.CharField(max_length=80)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and canonical JSON body.")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    response_status = models.PositiveSmallIntegerField()
    # The first response's JSON as text, keys in the order it was sent: a replay sends the same bytes (the
    # contract's "same body"). PostgreSQL's jsonb, used before, stored the keys in its own order.
    response_body = models.TextField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100)
    response_location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_once_per_owner")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.owner} {self.key} → {self.response_status}"
