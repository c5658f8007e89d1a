"""Who may call the API at all: an API client, or a staff user with a role at some clinic.

Finer rights (completing, clearing) are the booking services' to enforce;
they raise NotAllowed, which becomes a 403.
"""

from rest_framework import permissions

from api.access import caller_for


class IsApiCaller(permissions.BasePermission):
    message = "Your account has no role at any clinic."

    def has_permission(self, request, view) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False  # DRF turns this into 401 (NotAuthenticated), as a key is asked for
        return caller_for(request).has_any_clinic
