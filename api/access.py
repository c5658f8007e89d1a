"""The caller of a request: an API client or a staff user, with their clinics and rights.

Every query a view makes starts from `caller.clinics()`, so tenancy is
enforced in one place: what lies outside is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.db.models import QuerySet

from clinic.models import ApiClient, Clinic, Organisation, Patient
from clinic.record_changes import ChangedBy
from clinic.selectors import (
    clinics_for_user,
    clinics_granted_to_client,
    is_clinical,
    organisations_of,
    patient_in,
    patients_in,
)
from core.compiled import CompiledQuery
from scheduler.booking import Actor

# Up to this many clinics, a request's scope is read once and its queries name the clinics by id; a caller
# granted more (whole organisations of many clinics) keeps the subquery, so no statement carries thousands
# of parameters.
SCOPE_INLINE_MAX = 200


# Read for every request an API client makes: compiled once per connection (core.compiled).
_CLIENT_CLINIC_IDS = CompiledQuery(
    lambda client_id: clinics_granted_to_client(client_id).order_by().values_list("pk")[: SCOPE_INLINE_MAX + 1]
)


@dataclass
class Caller:
    client: ApiClient | None
    user: object | None

    def _granted(self) -> QuerySet[Clinic]:
        if self.client is not None:
            return clinics_granted_to_client(self.client.pk)
        return clinics_for_user(self.user)

    @cached_property
    def _clinic_ids(self) -> list | None:
        """The granted clinics' ids, read once per request (sorted, so equal scopes give equal statements), or
        None past SCOPE_INLINE_MAX."""
        if self.client is not None:
            ids = sorted(pk for (pk,) in _CLIENT_CLINIC_IDS.rows(self.client.pk))
        else:
            ids = sorted(self._granted().values_list("pk", flat=True)[: SCOPE_INLINE_MAX + 1])
        return ids if len(ids) <= SCOPE_INLINE_MAX else None

    def patient(self, pk) -> Patient | None:
        """The patient `pk` if the caller may see them (a tombstone is none), its clinic loaded, else None."""
        ids = self._clinic_ids
        if ids is None:
            return patients_in(self._granted()).filter(pk=pk).first() if pk is not None else None
        return patient_in(ids, pk)

    def clinics(self) -> QuerySet[Clinic]:
        """The clinics granted: one by one, or every clinic of a granted organisation (now and later)."""
        ids = self._clinic_ids
        return self._granted() if ids is None else Clinic.objects.filter(pk__in=ids)

    def scope(self) -> list | QuerySet[Clinic]:
        """The clinics granted as their ids (read once per request) or, past SCOPE_INLINE_MAX, as a queryset:
        what the scheduler's services take as `within`."""
        ids = self._clinic_ids
        return self._granted() if ids is None else ids

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

    @property
    def reads_reasons(self) -> bool:
        """Whether the words someone wrote about a cancellation (the patient's note to the clinic, the desk's or a
        platform's reason) are shown to this caller: they may say something of the patient's health. The clinic's
        own staff read them (the desk shows them too); an API client only with the clinician's right."""
        return self.client is None or self.client.clinical

    def changed_by(self) -> ChangedBy:
        """Who changes a patient's details through the API, for the consent record (reminders.consent)."""
        return ChangedBy(via="api", label=self.actor().label)

    def actor_for_record(self, patient: Patient) -> Actor:
        """Who acts on a patient's record, which is the organisation's and shared by its clinics (a merge): a
        staff user holds the clinician's right there if they hold it at any clinic of that organisation, as the
        front desk of any of its sites lets them."""
        if self.client is not None:
            return self.actor()
        clinics = clinics_for_user(self.user).filter(organisation_id=patient.organisation_id)
        clinical = any(is_clinical(self.user, pk) for pk in clinics.values_list("pk", flat=True))
        return Actor(label=self.user.get_username(), user=self.user, clinical=clinical)


def caller_for(request) -> Caller:
    cached = getattr(request, "_api_caller", None)
    if cached is None:
        client = request.auth if isinstance(request.auth, ApiClient) else None
        cached = Caller(client=client, user=None if client else request.user)
        request._api_caller = cached
    return cached
