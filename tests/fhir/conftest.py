"""FHIR tests use the API's world: two clinics, callers of every kind, the clock at Monday 2 March 2026 09:00 UTC."""

from tests.api.conftest import (  # noqa: F401 (fixtures)
    _clock,
    api,
    api_key,
    clinic,
    clinical_api,
    clinician,
    other_clinic,
    other_patient,
    other_practitioner,
    patient,
    practitioner,
    pytest_configure,
    receptionist,
)
