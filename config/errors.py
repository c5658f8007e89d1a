"""Django's site-wide error handlers (config/urls.py: handler400, 403, 404, 500), for what never reaches a view that
answers for itself (a refused Host, an error in middleware, a path nothing serves).

Each interface answers in its own format for its own paths: under /fhir/ an OperationOutcome (fhir.handlers),
under /api/ problem details (api.problems); everywhere else Django's own pages. The choice is made here, in
config, the one layer that sees both interfaces (neither may import the other).
"""

from __future__ import annotations

from api import problems
from fhir import handlers


def _is_fhir(request) -> bool:
    return request.path == "/fhir" or request.path.startswith("/fhir/")


def _for(request):
    """The handlers of the interface that owns the request's path; api.problems hands non-API paths to Django's."""
    return handlers if _is_fhir(request) else problems


def bad_request(request, exception=None):
    return _for(request).bad_request(request, exception)


def permission_denied(request, exception=None):
    return _for(request).permission_denied(request, exception)


def not_found(request, exception=None):
    return _for(request).not_found(request, exception)


def server_error(request):
    return _for(request).server_error(request)
