"""Who may call the API at all: an API client, or a staff user with a role at some clinic.

Finer rights (completing, clearing) are the booking services' to enforce;
they raise NotAllowed, which becomes a 403.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import permissions

from api.access import caller_for
from api.idempotency import HEADER, request_fingerprint
from api.models import IdempotencyKey


class IsApiCaller(permissions.BasePermission):
    message = "Your account has no role at any clinic."

    def has_permission(self, request, view) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False  # DRF turns this into 401 (NotAuthenticated), as a key is asked for
        caller = caller_for(request)
        return caller.has_any_clinic or _replay_of_a_stored_key(request, view, caller)


def _replay_of_a_stored_key(request, view, caller) -> bool:
    """A keyed POST from a caller with no clinic left, to a view that replays keys (`@idempotent`), whose key holds
    the answer to this very request (within its 24 h): let it reach the replay, so that a platform that lost its last
    grant still learns what its lost request did, as one that lost a clinic does; nothing new is done or disclosed.
    Anything else (another method, another body, a key not stored) is refused as before."""
    key = request.headers.get(HEADER)
    handler = getattr(view, (request.method or "").lower(), None)
    if key is None or request.method != "POST" or not getattr(handler, "idempotent", False):
        return False
    since = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    stored = IdempotencyKey.objects.filter(owner=caller.owner_key, key=key, created_at__gte=since).first()
    return stored is not None and stored.fingerprint == request_fingerprint(request)
