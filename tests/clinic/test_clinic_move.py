"""A clinic moves to another organisation only while it has nothing of its own (Clinic.clean, Clinic.save).

A clinic with patients at home there, appointments, procedure records, plans or recalls keeps its organisation,
through full_clean, a bare save and the admin alike; its set-up (practitioners, staff roles, API clients' grants)
does not hold it back. A form's check (full_clean) of an edit that leaves the organisation as it is asks nothing
more of the database; a save that writes the organisation checks under the clinic's lock whatever copy it saves (one
read before the clinic moved would write the old organisation back), and one of other fields alone asks nothing.
"""

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import ApiClient, Clinic, StaffMembership, StaffRole
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, Recall, TreatmentPlan
from tests.conftest import CLOCK
from tests.factories import (
    AppointmentFactory,
    ClinicFactory,
    OrganisationFactory,
    PatientFactory,
    PractitionerFactory,
    ProcedureRecordFactory,
)

pytestmark = pytest.mark.django_db

REFUSED = "it cannot move to another organisation"


@pytest.fixture
def chain(catalogue):
    """Organisation "Move Chain" with its home site and the site `moving` (nothing of its own yet), and a buyer."""
    organisation = OrganisationFactory(code="move-chain", name="Move Chain")
    return {
        "organisation": organisation,
        "home": ClinicFactory(code="move-home", name="Home Site", organisation=organisation),
        "moving": ClinicFactory(code="move-site", name="Moving Site", organisation=organisation),
        "buyer": OrganisationFactory(code="move-buyer", name="Buyer Group"),
    }


def _template() -> PlanTemplate:
    plan_templates_load()
    return PlanTemplate.objects.filter(organisation=None).order_by("code").first()


def _home_patient(chain):
    return PatientFactory(clinic=chain["moving"])


def _appointment(chain):
    """At the moving site, of a patient whose home is the other site."""
    return AppointmentFactory(
        patient=PatientFactory(clinic=chain["home"]),
        clinic=chain["moving"],
        practitioner=PractitionerFactory(clinic=chain["moving"]),
    )


def _procedure_record(chain):
    """Recorded at the moving site (reported there), of a patient whose home is the other site."""
    return ProcedureRecordFactory(
        patient=PatientFactory(clinic=chain["home"]), clinic=chain["moving"], performed_at=CLOCK
    )


def _plan(chain):
    return TreatmentPlan.objects.create(
        patient=PatientFactory(clinic=chain["home"]), template=_template(), clinic=chain["moving"], created_at=CLOCK
    )


def _recall(chain):
    """Due at the moving site after a treatment done at the other one."""
    after = AppointmentFactory(patient=PatientFactory(clinic=chain["home"]))
    template = _template()
    return Recall.objects.create(
        patient=after.patient,
        clinic=chain["moving"],
        after=after,
        procedure_id=template.procedure_id,
        template=template,
        due_on=date(2026, 6, 1),
        created_at=CLOCK,
    )


IN_USE = {
    "a patient at home there": (_home_patient, "patients"),
    "an appointment there": (_appointment, "appointments"),
    "a procedure record it recorded": (_procedure_record, "procedure records"),
    "a treatment plan there": (_plan, "treatment plans"),
    "a recall there": (_recall, "recalls"),
}


def _stored_organisation_id(clinic):
    return Clinic.objects.values_list("organisation_id", flat=True).get(pk=clinic.pk)


@pytest.mark.parametrize("kind", IN_USE)
def test_a_clinic_in_use_is_refused_on_the_organisation_field_by_full_clean(chain, kind):
    make, words = IN_USE[kind]
    make(chain)
    moving = Clinic.objects.get(pk=chain["moving"].pk)
    moving.organisation = chain["buyer"]
    with pytest.raises(ValidationError) as refused:
        moving.full_clean()
    [message] = refused.value.message_dict["organisation"]
    assert message.startswith(f"This clinic already has {words} of Move Chain: {REFUSED};"), message
    assert _stored_organisation_id(moving) == chain["organisation"].pk


@pytest.mark.parametrize("kind", IN_USE)
def test_a_clinic_in_use_is_refused_by_a_save_that_skips_full_clean(chain, kind):
    make, words = IN_USE[kind]
    make(chain)
    moving = chain["moving"]  # the instance the factory saved: what it last wrote is known
    moving.organisation = chain["buyer"]
    with pytest.raises(ValidationError) as refused:
        moving.save()
    assert f"already has {words} of Move Chain: {REFUSED}" in refused.value.message_dict["organisation"][0]
    assert _stored_organisation_id(moving) == chain["organisation"].pk


def test_a_clinic_in_use_cleared_of_its_organisation_does_not_become_an_organisation_of_one(chain):
    """Left empty, a clinic's organisation is a new one of its own: for a clinic in use, a move all the same."""
    _home_patient(chain)
    moving = Clinic.objects.get(pk=chain["moving"].pk)
    moving.organisation = None
    with pytest.raises(ValidationError) as refused:
        moving.full_clean()
    assert REFUSED in refused.value.message_dict["organisation"][0]
    with pytest.raises(ValidationError):
        moving.save()
    assert _stored_organisation_id(moving) == chain["organisation"].pk
    assert not type(chain["organisation"]).objects.filter(code="move-site").exists()


def test_a_clinic_whose_organisation_was_not_read_is_still_checked(chain):
    _home_patient(chain)
    moving = Clinic.objects.only("code", "name", "timezone", "country").get(pk=chain["moving"].pk)
    moving.organisation_id = chain["buyer"].pk
    with pytest.raises(ValidationError):
        moving.save()
    assert _stored_organisation_id(moving) == chain["organisation"].pk


def test_a_clinic_with_only_its_set_up_moves(chain, django_user_model):
    """Set up under the wrong organisation: practitioners with their hours, a staff role, an API client's grant
    move with it; so does a clinic left empty (a new organisation of one)."""
    moving = chain["moving"]
    PractitionerFactory(clinic=moving)
    user = django_user_model.objects.create_user(username="move-desk", password="pw-for-tests-only")
    StaffMembership.objects.create(user=user, clinic=moving, role=StaffRole.RECEPTIONIST)
    ApiClient.objects.create(name="Move platform", key_prefix="mv01", key_hash="x" * 64).clinics.add(moving)
    moving = Clinic.objects.get(pk=moving.pk)
    moving.organisation = chain["buyer"]
    moving.full_clean()
    moving.save()
    assert _stored_organisation_id(moving) == chain["buyer"].pk
    moving.organisation = None
    moving.full_clean()
    moving.save()
    assert moving.organisation.code == "move-site" and _stored_organisation_id(moving) == moving.organisation_id


def test_an_unchanged_save_of_a_clinic_in_use_works_and_its_form_check_asks_nothing_about_a_move(
    chain, django_assert_num_queries, django_assert_max_num_queries
):
    _appointment(chain)
    moving = Clinic.objects.get(pk=chain["moving"].pk)
    moving.name = "Moving Site Renamed"
    with CaptureQueriesContext(connection) as cleaned:
        moving.full_clean()
    assert not [q["sql"] for q in cleaned.captured_queries if "clinic_appointment" in q["sql"]]
    with django_assert_max_num_queries(5):  # the lock, the check, the UPDATE (and the test's savepoint)
        moving.save()
    assert Clinic.objects.get(pk=moving.pk).name == "Moving Site Renamed"
    moving.name = "Moving Site"
    with django_assert_num_queries(1):  # the UPDATE: the organisation is not written
        moving.save(update_fields=["name"])
    with django_assert_num_queries(1):  # the INSERT: a new clinic is not moving
        Clinic(code="move-new", name="New Site", timezone="Europe/London", organisation=chain["buyer"]).save()


def _change_form(clinic, **changes) -> dict:
    form = {
        "code": clinic.code,
        "organisation": str(clinic.organisation_id),
        "name": clinic.name,
        "timezone": clinic.timezone,
        "country": clinic.country,
        "phone": clinic.phone,
        "cancellation_window_hours": str(clinic.cancellation_window_hours),
    }
    return {**form, **changes}


def test_the_admin_shows_the_refusal_on_the_organisation_field_and_saves_nothing(chain, admin_client):
    _home_patient(chain)
    moving = chain["moving"]
    url = reverse("admin:clinic_clinic_change", args=[moving.pk])
    response = admin_client.post(url, _change_form(moving, organisation=str(chain["buyer"].pk), name="Renamed"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["organisation"] and REFUSED in errors["organisation"][0]
    assert "This clinic already has patients of Move Chain" in response.content.decode()
    stored = Clinic.objects.get(pk=moving.pk)
    assert stored.organisation_id == chain["organisation"].pk and stored.name == "Moving Site"


def test_the_admin_moves_a_clinic_with_nothing_of_its_own(chain, admin_client):
    moving = chain["moving"]
    url = reverse("admin:clinic_clinic_change", args=[moving.pk])
    response = admin_client.post(url, _change_form(moving, organisation=str(chain["buyer"].pk)))
    assert response.status_code == 302
    assert _stored_organisation_id(moving) == chain["buyer"].pk


def test_the_admin_saves_an_unchanged_organisation_of_a_clinic_in_use(chain, admin_client):
    _home_patient(chain)
    moving = chain["moving"]
    url = reverse("admin:clinic_clinic_change", args=[moving.pk])
    assert admin_client.post(url, _change_form(moving, name="Renamed")).status_code == 302
    stored = Clinic.objects.get(pk=moving.pk)
    assert stored.organisation_id == chain["organisation"].pk and stored.name == "Renamed"


def test_a_clinic_moved_while_empty_then_used_stays(chain):
    """Moved while empty, then given a patient: the next move is refused (what was saved last is what is compared)."""
    moving = chain["moving"]
    moving.organisation = chain["buyer"]
    moving.save()
    PatientFactory(clinic=moving)
    moving.organisation = chain["organisation"]
    with pytest.raises(ValidationError) as refused:
        moving.save()
    assert "already has patients of Buyer Group" in refused.value.message_dict["organisation"][0]
    assert _stored_organisation_id(moving) == chain["buyer"].pk
