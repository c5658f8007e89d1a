"""API clients: booking platforms, each with a hashed key scoped to its clinics."""
import hashlib
import secrets
import uuid

from django.db import models

from clinic.models import Clinic


def hash_key(key: str) -> str:
    # Keys are 256-bit random secrets, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiClient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    clinics = models.ManyToManyField(Clinic, related_name="api_clients")
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    clinical = models.BooleanField(
        default=False, help_text="May complete appointments and clear contraindications (the clinician's right)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def set_new_key(self) -> str:
        """Give the client a fresh key; return it (it is shown once and stored only hashed)."""
        prefix = secrets.token_hex(4)
        key = f"{prefix}.{secrets.token_urlsafe(32)}"
        self.key_prefix = prefix
        self.key_hash = hash_key(key)
        return key


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
    response_body = models.JSONField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100)
    response_location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_once_per_owner")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.owner} {self.key} → {self.response_status}"
