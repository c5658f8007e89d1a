"""Who may call the API at all: an API client, or a staff user with a role at some clinic.

Finer rights (completing, clearing) are the booking services' to enforce;
they raise NotAllowed, which becomes a 403.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import permissions

from api.access import caller_for
from api.idempotency import HEADER
from api.models import IdempotencyKey


class IsApiCaller(permissions.BasePermission):
    message = "Your account has no role at any clinic."

    def has_permission(self, request, view) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False  # DRF turns this into 401 (NotAuthenticated), as a key is asked for
        caller = caller_for(request)
        return caller.has_any_clinic or _replay_of_a_stored_key(request, caller)


def _replay_of_a_stored_key(request, caller) -> bool:
    """A keyed write from a caller with no clinic left whose key holds an answer (within its 24 h): let it reach
    the replay (api.idempotency), so that a platform that lost its last grant still learns what its lost request
    did, as one that lost a clinic does; nothing new is done or disclosed. Anything else is refused as before."""
    key = request.headers.get(HEADER)
    if key is None or request.method in permissions.SAFE_METHODS:
        return False
    since = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    return IdempotencyKey.objects.filter(owner=caller.owner_key, key=key, created_at__gte=since).exists()
