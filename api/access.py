"""The caller of a request: an API client or a staff user, with their clinics and rights.

Every query a view makes starts from `caller.clinics()`, so tenancy is
enforced in one place: what lies outside is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.db.models import Q, QuerySet

from clinic.models import ApiClient, Clinic, Organisation
from clinic.selectors import clinics_for_user, is_clinical, organisations_of
from scheduler.booking import Actor

# Up to this many clinics, a request's scope is read once and its queries name the clinics by id; a caller
# granted more (whole organisations of many clinics) keeps the subquery, so no statement carries thousands
# of parameters.
SCOPE_INLINE_MAX = 200


@dataclass
class Caller:
    client: ApiClient | None
    user: object | None

    def _granted(self) -> QuerySet[Clinic]:
        if self.client is not None:
            return Clinic.objects.filter(
                Q(pk__in=self.client.clinics.through.objects.filter(apiclient=self.client).values("clinic_id"))
                | Q(
                    organisation_id__in=self.client.organisations.through.objects.filter(apiclient=self.client).values(
                        "organisation_id"
                    )
                )
            )
        return clinics_for_user(self.user)

    @cached_property
    def _clinic_ids(self) -> list | None:
        """The granted clinics' ids, read once per request (sorted, so equal scopes give equal statements), or
        None past SCOPE_INLINE_MAX."""
        ids = sorted(self._granted().values_list("pk", flat=True)[: SCOPE_INLINE_MAX + 1])
        return ids if len(ids) <= SCOPE_INLINE_MAX else None

    def clinics(self) -> QuerySet[Clinic]:
        """The clinics granted: one by one, or every clinic of a granted organisation (now and later)."""
        ids = self._clinic_ids
        return self._granted() if ids is None else Clinic.objects.filter(pk__in=ids)

    def organisations(self) -> QuerySet[Organisation]:
        """Every organisation one of the caller's clinics belongs to: their patients are in scope."""
        return organisations_of(self.clinics())

    @cached_property
    def has_any_clinic(self) -> bool:
        return self._clinic_ids is None or bool(self._clinic_ids)

    @property
    def owner_key(self) -> str:
        """Scopes idempotency keys and throttle counters to this caller."""
        if self.client is not None:
            return f"client:{self.client.pk}"
        return f"user:{self.user.pk}"

    def actor(self, clinic_id=None) -> Actor:
        """Who acts at that clinic, and whether with the clinician's right there (a staff user without a clinic
        named: never; an API client holds its right everywhere it is granted)."""
        if self.client is not None:
            return Actor(label=f"API client {self.client.name}", user=None, clinical=self.client.clinical)
        clinical = clinic_id is not None and is_clinical(self.user, clinic_id)
        return Actor(label=self.user.get_username(), user=self.user, clinical=clinical)


def caller_for(request) -> Caller:
    cached = getattr(request, "_api_caller", None)
    if cached is None:
        client = request.auth if isinstance(request.auth, ApiClient) else None
        cached = Caller(client=client, user=None if client else request.user)
        request._api_caller = cached
    return cached
