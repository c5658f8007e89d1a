"""A merged record's address (a tombstone's id in /patients/<id>/...) answers 308 to the survivor's."""

from __future__ import annotations

from django.urls import reverse

from api.problems import MergedRecord
from clinic.selectors import merged_patient_survivor
from core.ids import parse_uuid


def redirect_if_merged(request, clinics, kwargs: dict) -> None:
    """Raise a 308 to the same operation on the survivor when `kwargs["patient_id"]` is a tombstone the
    caller's clinics could see; do nothing otherwise (the caller then answers its 404)."""
    pk = parse_uuid(kwargs.get("patient_id"))
    survivor = merged_patient_survivor(clinics, pk) if pk else None
    if survivor is None:
        return
    match = request.resolver_match
    location = reverse(
        f"{match.namespace}:{match.url_name}" if match.namespace else match.url_name,
        kwargs={**kwargs, "patient_id": str(survivor.pk)},
    )
    query = request.META.get("QUERY_STRING", "")
    raise MergedRecord(location + (f"?{query}" if query else ""), survivor.pk)
