"""Who may take a booking with a named practitioner (scheduler.booking._candidates): the caller's clinics given
as their ids take the compiled statement, as a queryset the ORM's; both find the same practitioner or refuse
with the same code, locking or not."""

import uuid

import pytest
from django.db import transaction

from clinic.models import Clinic, ProcedureType
from core.errors import InvalidInput
from scheduler.booking import _candidates, _named_who_may_book, appointment_check
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(catalogue):
    group = OrganisationFactory()
    north, south = ClinicFactory(organisation=group), ClinicFactory(organisation=group)
    other = ClinicFactory()
    return {
        "patient": PatientFactory(clinic=north),
        "north": north,
        "south": south,
        "at_north": PractitionerFactory(clinic=north),
        "at_south": PractitionerFactory(clinic=south),
        "no_botox": PractitionerFactory(clinic=north, procedures=["filler"]),
        "inactive": PractitionerFactory(clinic=north, is_active=False),
        "elsewhere": PractitionerFactory(clinic=other),
    }


def _outcome(world, name, within, *, lock):
    practitioner = world.get(name)
    pk = practitioner.pk if practitioner else uuid.uuid4()
    botox = ProcedureType.objects.get(code="botox")
    try:
        with transaction.atomic():
            found = _candidates(world["patient"], botox, str(pk), lock=lock, within=within)
    except InvalidInput as refused:
        return ("refused", str(refused.code), refused.field)
    return [(p.pk, p.clinic.pk, p.clinic.timezone) for p in found]


@pytest.mark.parametrize("lock", [False, True])
@pytest.mark.parametrize("name", ["at_north", "at_south", "no_botox", "inactive", "elsewhere", "unknown"])
@pytest.mark.parametrize("scope", ["north", "both", "any"])
def test_ids_and_a_queryset_give_the_same_answer(world, name, scope, lock):
    ids = {"north": [world["north"].pk], "both": [world["north"].pk, world["south"].pk], "any": None}[scope]
    compiled = _outcome(world, name, ids, lock=lock)
    if ids is not None:
        assert compiled == _outcome(world, name, Clinic.objects.filter(pk__in=ids), lock=lock)
    # And the ORM's own answer to the same question, asked directly.
    practitioner = world.get(name)
    orm = list(
        _named_who_may_book(
            world["patient"].organisation_id, practitioner.pk if practitioner else uuid.uuid4(), "botox", ids
        ).select_related("clinic")
    )
    assert (compiled if compiled[0] != "refused" else []) == [(p.pk, p.clinic.pk, p.clinic.timezone) for p in orm]
    expected_found = name == "at_north" or (name == "at_south" and scope != "north")
    if expected_found:
        assert compiled == [(world[name].pk, world[name].clinic.pk, world[name].clinic.timezone)]
    else:
        assert compiled[0] == "refused"


def test_a_named_practitioner_in_scope_is_one_statement(world, django_assert_num_queries):
    botox = ProcedureType.objects.get(code="botox")
    with transaction.atomic():
        with django_assert_num_queries(1):
            found = _candidates(
                world["patient"], botox, str(world["at_north"].pk), lock=True, within=[world["north"].pk]
            )
            assert found[0].clinic.name == world["north"].name  # loaded with it


def test_a_check_with_the_callers_clinic_ids_names_the_reason(world, now):
    with pytest.raises(InvalidInput) as refused:
        appointment_check(
            patient=world["patient"],
            procedure_code="botox",
            start_at=now,
            now=now,
            practitioner_id=str(world["at_south"].pk),
            within=[world["north"].pk],
        )
    assert (refused.value.field, str(refused.value.code)) == ("practitioner", "unknown_practitioner")
