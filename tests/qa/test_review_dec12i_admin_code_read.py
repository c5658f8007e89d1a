"""Review probe (12 December, i): the Django admin read line by line, as a clinic's and an organisation's administrator
use it.

Read: clinic/admin.py (with clinic/forms.py, which its forms and inlines use), plans/admin.py, api/admin.py,
reminders/admin.py and config/admin.py (scheduler/admin.py was read on the morning of 12 December), beside
docs/organisations.md ("Front desk and admin"), docs/rules.md, docs/reminders.md (consent) and the domain brief's
section 6. Looked for: another organisation's or clinic's rows seen or chosen (change lists, autocomplete and raw-id
look-ups, list filters, dropdowns in forms and inlines, search, history); a save or action that writes around the
services; a form that takes less than the API takes for the same field; a bulk action reaching rows by crafted
`_selected_action` ids; a 500 on odd input. tests/qa/test_admin_sweep_probe.py (every page as a superuser, every
change list and autocomplete as a tenant's administrator) and tests/qa/test_review_dec10a_destructive_admin.py
(deletions, outbox actions) are not repeated. Administrators are made as setup_demo makes them
(`_grant_admin_permissions`). The suite's Monday is 2 March 2026, 09:00 UTC (London on GMT).

Found (strict xfails, all mended or decided as recommended the same day; the tests now pass: clinic/admin.py, clinic/forms.py,
clinic/models.py with migration 0032, config/admin.py, reminders/admin.py, plans/admin.py):
- DEFECT: a date of birth in the future (or before 1900) is saved by the admin's patient form; the API refuses both
  (400 birth_date_in_future / birth_date_too_early) (clinic/forms.py, `PatientAdminForm`: `_check_birth_date` is the
  service's only).
- DEFECT: a medication course ended in 9999, entered in the patient's admin, is saved; every booking of the patient
  then answers 500 (year 10000 is out of range). The API refuses it (400) (clinic/admin.py, `MedicationCourseInline`:
  no `_course_dates_in_range`).
- DEFECT: a procedure "performed" on 1 January of year 1 is saved by the admin; the API refuses it, and the
  patient's history over the API then answers 500 at a New York clinic (clinic/admin.py, `ProcedureRecordForm`:
  only the future is refused).
- DEFECT: time off "until further notice" (to 31 December 9999) saved in the practitioner's admin makes every
  booking with that practitioner answer 500 (clinic/admin.py, `TimeOffInline`: no year bounds).
- DEFECT: a cancellation window of 20,000,000 hours is saved by the clinic's admin; every patient's own page of the
  clinic then answers 500 (clinic/admin.py, `ClinicAdmin`; `scheduler.selfservice.change_deadline` overflows).
- DEFECT: any change list's action posted with an id its primary key cannot hold (`_selected_action=junk`, a UUID
  to an integer key) answers 500 (ValidationError / ValueError in Django's `response_action`; config/admin.py
  `ClinicAdminSite` or config/request_guards.py has no guard for it).
- DEFECT: a record merged into another (a tombstone) is edited in the admin: its name and number saved, which the
  duplicate check still reads ("nothing can be ... edited on it", docs/organisations.md) (clinic/admin.py,
  `PatientAdmin`: only the inlines are read-only on a tombstone).
- DEFECT: a clinic administrator deletes a patient's STOP (and an opt-in's consent wording) in the admin: the
  append-only consent trail loses it, and the desk no longer warns that the patient turned texts off themselves
  (reminders/admin.py, `ContactOptOutAdmin`, `ContactOptInAdmin`: the default delete permission).
- DEFECT: Save on the read-only appointment page writes the whole row back as it read it: a cancellation the desk
  commits meanwhile is undone (status confirmed again, no audit, no webhook) (clinic/admin.py, `AppointmentAdmin`:
  change permission with every field read-only; the outbox's and the opt-outs' pages are the same).
- DEFECT: a site's administrator cannot save anything on the record of a patient whose home is the sister site (a
  course, an intake line): the home clinic's dropdown offers their own clinics only, so the patient's own home clinic
  is "not one of the available choices" (clinic/admin.py, `ClinicScopedChoices.scoped_choices["clinic"]`).
- DEFECT: staff with the plans' view permission ("clinic staff may look", docs/plans.md) see every organisation's plan
  templates and the treatment plans' template filter names them (plans/admin.py, `PlanTemplateAdmin.get_queryset`,
  `TreatmentPlanAdmin.list_filter`); the API lists only the caller's organisations' and the defaults.
- DEFECT: the merge trail is scoped by any role, not by the administrator's grants: an administrator of London who
  is a receptionist at another organisation's clinic sees that organisation's merges (and their patients' names) in
  the admin, where its patients are not listed (clinic/admin.py, `PatientMergeAdmin.get_queryset` and
  `MergeWarningCheckAdmin.get_queryset` use `clinics_for_user`, every other admin `admin_clinic_ids`).
- QUESTION: a site's administrator gives the organisation's administrator a clinic role at their site (the
  organisation-wide admin is among "their own staff"); a clinic's grant wins over the organisation's, so the
  organisation's administrator is a receptionist at that site from then on (clinic/admin.py,
  `StaffMembershipAdmin.formfield_for_foreignkey`, `staff_of`). Recommendation: refused on the user field.
- QUESTION: a patient added in the admin is not asked the duplicate question the desk and the API ask at
  registration (clinic/admin.py, `PatientAdmin`: no `patient_create`). Recommendation: the add form refuses a likely
  duplicate, naming it.
- QUESTION: a practitioner's treatment taken off in the admin over visits booked for it says nothing, while hours,
  time off, a switch-off or a move over booked visits are each said (`PractitionerAdmin.save_related`).
  Recommendation: the same warning ("1 booked appointment still to come ...").

Held: an action posted with another organisation's calendar feed among the ids leaves it alone (the action's
queryset is the admin's own); an organisation's rule cannot be added to another organisation's rule book by posting
its id; the change lists with another organisation's clinic or organisation in a list filter answer, as a site's and
as an organisation's administrator, without a 500 and without naming it. Read and found right without a test here:
the staff role form's user search (config.admin.FormFieldAutocompleteJsonView, pinned in tests/clinic/test_admin.py),
the rule forms' `replaces` (limited to defaults by the model), no "view on site" link anywhere (no model has
get_absolute_url), the history pages (reached only through each admin's scoped `get_object`), the outbox's actions
(tests/qa/test_review_dec10a_destructive_admin.py), webhooks and API clients (superusers only).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from clinic.merging import patient_merge
from clinic.models import (
    Appointment,
    AppointmentStatus,
    AuditAction,
    AuditEvent,
    Clinic,
    MedicationCourse,
    Patient,
    PatientMerge,
    Practitioner,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
    TimeOff,
)
from clinic.selectors import staff_role
from core.errors import ErrorCode
from plans.defaults import plan_templates_load
from plans.models import PlanTemplate, TreatmentPlan
from reminders import feeds
from reminders.consent import latest_own_opt_out
from reminders.models import CalendarFeed, ContactOptIn, ContactOptOut, OutboxMessage, OutboxStatus
from scheduler.booking import appointment_cancel
from scheduler.models import IntervalRule
from tests.api.conftest import http, new_api_client
from tests.factories import PatientFactory
from tests.qa.helpers import (
    API,
    NOW,
    RECEPTION,
    admin_errors,
    api_book,
    as_rendered,
    book,
    clinic_admin_client,
    fresh,
    ldn,
    nyc,
    portal_page,
    url,
)
from tests.races import held_in_another_connection, in_a_thread, lock_waits

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]

PASSWORD = "qa-dec12i-pw-8830"


def admin_of(username: str, *, clinic=None, organisation=None) -> Client:
    """A signed-in administrator of `clinic` or of the whole `organisation`, as setup_demo makes one."""
    return clinic_admin_client(username, PASSWORD, clinic=clinic, organisation=organisation)[1]


def user_named(username: str):
    return get_user_model().objects.get(username=username)


def said(response) -> list[str]:
    """The messages the admin queued for the next page."""
    return [str(message) for message in get_messages(response.wsgi_request)]


def patient_page(client: Client, patient: Patient, **changes) -> tuple[str, dict]:
    """The admin's patient page as drawn, with `changes` (main form fields and inline rows) applied."""
    page = url(Patient, "change", patient.pk)
    return page, {**as_rendered(client, page, Patient), **changes}


# --- Forms that take what the API refuses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "code"),
    # 1850 is refused by the API's date field itself (years 1900 to 2999), before the service's birth_date_too_early.
    [("2026-03-03", ErrorCode.BIRTH_DATE_IN_FUTURE.value), ("1850-01-01", "invalid_input")],
    ids=["tomorrow", "1850"],
)
def test_a_date_of_birth_the_api_refuses_is_refused_by_the_admin_too(clinic, patient, api, typed, code):
    """clinic.services: every interface "validates its input fully ... both interfaces show the same messages". A date
    of birth of tomorrow, or of 1850: the API's PATCH refuses each (400, its code); the admin's form must too."""
    refused = api.patch(f"{API}/patients/{patient.pk}/", {"date_of_birth": typed}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, code)
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page, data = patient_page(site, patient, date_of_birth=typed)

    response = site.post(page, data)

    assert fresh(patient).date_of_birth is None
    assert response.status_code == 200 and "date of birth" in admin_errors(response).lower()


def test_a_medication_course_ended_in_9999_is_refused_by_the_admin_as_by_the_api(clinic, patient, practitioner, api):
    """clinic.services._course_dates_in_range: "a course ended in 9999 would be stored, and every later check of the
    patient's rules overflow". The API refuses it (400); entered in the admin's inline it is saved, and the patient's
    next booking over the API answers 500 ("year 10000 is out of range"). Refused on the row, the booking goes."""
    course = {"drug": "isotretinoin", "started_on": "2025-01-01", "ended_on": "9999-12-01"}
    assert api.post(f"{API}/patients/{patient.pk}/medications/", course, format="json").status_code == 400
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page, data = patient_page(site, patient, **{f"medication_courses-0-{k}": v for k, v in course.items()})

    response = site.post(page, data)

    assert (response.status_code, MedicationCourse.objects.filter(patient=patient).count()) == (200, 0)
    api_book(api, patient, "2026-03-20T10:00:00+00:00")  # a Botox booked: 201


def test_a_procedure_performed_in_year_one_is_refused_by_the_admin_as_by_the_api(other_clinic, other_patient):
    """The API takes years 1900 to 2999 (api/fields.py; `_reported_at`). A Botox "performed" at 00:00 UTC on
    1 January of year 1, typed into the admin's history of a New York clinic's patient, is saved; the history's GET
    then reads it in New York's zone (year 0) and answers 500."""
    platform = http(new_api_client(other_clinic, name="qa-ny-platform")[1])
    history = f"{API}/patients/{other_patient.pk}/procedures/"
    body = {"procedure": "botox", "performed_at": "0001-01-01T00:00:00Z"}
    assert platform.post(history, body, format="json").status_code == 400
    ny_admin = admin_of("qa-ny-admin", clinic=other_clinic)
    row = {"procedure": "botox", "performed_at_0": "0001-01-01", "performed_at_1": "00:00:00", "source": "reported"}
    page, data = patient_page(ny_admin, other_patient, **{f"procedure_records-0-{k}": v for k, v in row.items()})

    response = ny_admin.post(page, data)

    assert (response.status_code, ProcedureRecord.objects.filter(patient=other_patient).count()) == (200, 0)
    assert platform.get(history).status_code == 200


def test_time_off_until_further_notice_in_9999_is_refused_on_the_row(clinic, patient, practitioner, api):
    """A practitioner away "until further notice", typed as time off to 31/12/9999 (the admin's date-time fields take
    any year) is saved; booking them over the API then answers 500 (OverflowError, date value out of range), where a
    day of their time off should be a refusal. Refused on the row (years 1900 to 2999, as the API's dates), the
    booking goes through."""
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page = url(Practitioner, "change", practitioner.pk)
    away = {"start_at_0": "2026-03-01", "start_at_1": "00:00:00", "end_at_0": "9999-12-31", "end_at_1": "23:59:00"}
    data = {**as_rendered(site, page, Practitioner), **{f"time_off-0-{k}": v for k, v in away.items()}}

    response = site.post(page, data)

    assert (response.status_code, TimeOff.objects.filter(practitioner=practitioner).count()) == (200, 0)
    api_book(api, patient, "2026-03-25T10:00:00+00:00")  # a Botox booked: 201


def test_a_cancellation_window_of_millions_of_hours_is_refused_on_the_field(clinic, patient, practitioner):
    """`Clinic.cancellation_window_hours` is a PositiveIntegerField the admin takes up to 2,147,483,647. 20,000,000
    hours (a typo) is saved, and the patient's page of a visit booked there answers 500: the visit's start minus the
    window is before year 1. Refused on the field, the page answers as before."""
    visit = book(patient, ldn(2026, 3, 20), NOW)
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page = url(Clinic, "change", clinic.pk)

    response = site.post(page, {**as_rendered(site, page, Clinic), "cancellation_window_hours": "20000000"})

    assert (response.status_code, fresh(clinic).cancellation_window_hours) == (200, 24)
    assert Client(raise_request_exception=False).get(portal_page(visit)).status_code == 200


# --- Actions posted with ids their key cannot hold -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "action", "selected"),
    [
        (OutboxMessage, "cancel", "junk"),
        (OutboxMessage, "retry_now", "1"),
        (Patient, "delete_selected", "not-a-uuid"),
        (ContactOptOut, "delete_selected", "00000000-0000-0000-0000-000000000001"),
    ],
    ids=["outbox-cancel", "outbox-retry", "patients-delete", "opt-outs-delete-uuid"],
)
def test_an_action_posted_with_an_id_its_key_cannot_hold_is_not_a_500(
    clinic, patient, practitioner, model, action, selected
):
    """The style guide: "Never a bare 500"; config/request_guards.py already answers a NUL with a 400 and drops an
    impossible year from a date filter. A crafted (or stale, tampered) `_selected_action` is answered as a bad
    request or as nothing selected, and changes nothing."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    pending = OutboxMessage.objects.filter(appointment=visit, status=OutboxStatus.PENDING).count()
    ContactOptOut.objects.create(patient=patient, channel="sms", via="desk", at=NOW)
    site = admin_of("qa-ldn-admin", clinic=clinic)

    response = site.post(url(model, "changelist"), {"action": action, "_selected_action": [selected], "post": "yes"})

    assert response.status_code in (302, 400), response.status_code
    assert OutboxMessage.objects.filter(appointment=visit, status=OutboxStatus.PENDING).count() == pending
    assert (Patient.objects.count(), ContactOptOut.objects.count()) == (1, 1)


def test_an_action_posted_with_another_organisations_feed_leaves_it_alone(clinic, practitioner, other_practitioner):
    """docs/reminders.md: calendar feeds, "a clinic administrator sees and chooses only their clinics'". London's
    administrator posts "Revoke" with New York's feed id beside their own: theirs is revoked, New York's still works
    (the action's queryset is the admin's own)."""
    mine = feeds.calendar_feed_create(now=NOW, practitioner=practitioner, created_by="qa")[0]
    theirs = feeds.calendar_feed_create(now=NOW, practitioner=other_practitioner, created_by="qa")[0]
    site = admin_of("qa-ldn-admin", clinic=clinic)

    response = site.post(
        url(CalendarFeed, "changelist"), {"action": "revoke", "_selected_action": [str(mine.pk), str(theirs.pk)]}
    )

    assert response.status_code == 302
    assert (fresh(mine).revoked_at, fresh(theirs).revoked_at) == (NOW, None)


# --- Saves that write around the services --------------------------------------------------------------------------


def test_a_record_merged_into_another_cannot_be_edited_in_the_admin(clinic, patient):
    """docs/organisations.md: a tombstone "leaves every list, search and candidate list ...; nothing can be booked,
    recorded or edited on it"; "what a merged record held still counts: its old number ... offers its survivor".
    The admin's change page of the tombstone saves a new name and number on it."""
    twin = PatientFactory(clinic=clinic, first_name="Pat", last_name="Leigh", phone="")
    patient_merge(merged=twin, into=patient, now=NOW, actor_label="qa clinician", clinical=True)
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page, data = patient_page(site, twin, first_name="Renamed", phone="+447911123999")

    response = site.post(page, data)

    assert response.status_code in (200, 403), response.status_code
    twin = fresh(twin)
    assert (twin.first_name, twin.phone) == ("Pat", "")


@pytest.mark.parametrize("model", [ContactOptOut, ContactOptIn], ids=["opt-out", "opt-in"])
def test_a_patients_consent_trail_cannot_be_deleted_in_the_admin(clinic, patient, model):
    """reminders/models.py: each is "a record that a patient withdrew (switched on) consent for a channel, and how.
    Append-only"; docs/reminders.md: after the patient's own STOP the desk says so before staff switch texts back on
    (`latest_own_opt_out`). A clinic administrator's delete removes the row (and with a STOP, that warning)."""
    patient.reminder_channels, patient.sms_consent = ["email"], False
    patient.save()
    if model is ContactOptOut:
        row = ContactOptOut.objects.create(patient=patient, channel="sms", via="sms_stop", at=NOW, was_on=True)
        assert latest_own_opt_out(patient, "sms") == row
    else:
        row = ContactOptIn.objects.create(patient=patient, channel="sms", via="desk", at=NOW, wording="Texts: yes")
    site = admin_of("qa-ldn-admin", clinic=clinic)

    response = site.post(url(model, "delete", row.pk), {"post": "yes"})
    bulk = site.post(
        url(model, "changelist"), {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )

    assert response.status_code == 403 and bulk.status_code < 500
    assert model.objects.filter(pk=row.pk).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_saving_the_read_only_appointment_page_does_not_undo_a_cancellation_made_meanwhile(
    clinic, patient, practitioner
):
    """clinic/admin.py: "Appointments are changed through the booking services (front desk and API), so their status
    and times are read-only here". The page still has Save, which saves the whole row as the request read it. The
    desk cancels the visit (its transaction not yet committed) while an administrator presses Save: the admin's write
    waits for the desk's, then puts `confirmed` back, with the trail saying cancelled and the platforms told so."""
    visit = book(patient, ldn(2026, 3, 10), NOW)
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page = url(Appointment, "change", visit.pk)
    data = as_rendered(site, page, Appointment)
    saved: list = []

    with held_in_another_connection(lambda: appointment_cancel(appointment=visit, actor=RECEPTION, now=NOW)):
        saving = in_a_thread(lambda: site.post(page, data), saved)
        deadline = time.monotonic() + 10
        while saving.is_alive() and not lock_waits() and time.monotonic() < deadline:
            time.sleep(0.02)  # the admin's write waits for the desk's (or, writing nothing, it is done)
    saving.join(30)

    assert AuditEvent.objects.filter(appointment=visit, action=AuditAction.CANCELLED).count() == 1
    assert fresh(visit).status == AppointmentStatus.CANCELLED, saved


# --- What a site's administrator may do with the organisation's patients and staff ----------------------------------


def test_a_site_administrator_saves_a_course_on_a_patient_whose_home_is_the_sister_site(clinic, west):
    """docs/organisations.md: "In the admin, a clinic administrator sees their clinics and the patients of their
    organisations"; a record is corrected in the admin ("correct the survivor's history, medication courses and
    intake in the admin"). London's administrator adds a finished isotretinoin course to Wendy (home: West): the form
    comes back with "This field is required" on the home clinic (West is not among its choices), nothing saved."""
    wendy = PatientFactory(clinic=west, first_name="Wendy", last_name="West")
    site = admin_of("qa-ldn-admin", clinic=clinic)
    course = {"drug": "isotretinoin", "started_on": "2025-01-01", "ended_on": "2025-06-01"}
    page, data = patient_page(site, wendy, **{f"medication_courses-0-{k}": v for k, v in course.items()})

    response = site.post(page, data)

    assert response.status_code == 302, admin_errors(response)
    assert MedicationCourse.objects.filter(patient=wendy).count() == 1
    assert fresh(wendy).clinic_id == west.pk


def test_a_site_administrator_cannot_give_the_organisations_administrator_a_role_at_the_site(clinic, west):
    """docs/organisations.md: "a site's administrator grants roles at their clinics, to their own staff or to accounts
    with no role yet; only an administrator of the whole organisation (or a superuser) grants, changes or removes an
    organisation-wide role"; "A role granted at the clinic itself wins over an organisation-wide one". The
    organisation's administrator is among London's "own staff" (`staff_of`), so London's administrator can make them
    a receptionist at London: they can no longer clear or complete there. Recommended: an account holding an
    organisation-wide role is the organisation's administrators' to change, refused on the field."""
    site = admin_of("qa-ldn-admin", clinic=clinic)
    admin_of("qa-org-admin", organisation=clinic.organisation)
    org_admin = user_named("qa-org-admin")

    response = site.post(
        url(StaffMembership, "add"),
        {"user": org_admin.pk, "clinic": str(clinic.pk), "organisation": "", "role": StaffRole.RECEPTIONIST},
    )

    assert response.status_code == 200
    assert (staff_role(org_admin, clinic.pk), staff_role(org_admin, west.pk)) == (StaffRole.CLINIC_ADMIN,) * 2


def test_a_patient_added_in_the_admin_is_asked_the_duplicate_question(clinic, patient):
    """Domain brief 6: "Likely duplicates (same date of birth and a similar name, or the same phone or e-mail) are
    caught at registration"; docs/organisations.md: `patient_create` asks it "for the API and the front desk alike".
    The admin's add page (a clinic administrator has the add permission) registers a second Pat Lee, born the same
    day, without a word."""
    patient.date_of_birth = ldn(1990, 5, 1).date()
    patient.save()
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page = url(Patient, "add")
    person = {"clinic": str(clinic.pk), "first_name": "Pat", "last_name": "Lee", "date_of_birth": "1990-05-01"}
    data = {**as_rendered(site, page, Patient), **person, "reminder_channels": "[]", "muted_topics": "[]"}

    response = site.post(page, data)

    assert response.status_code == 200 and "Pat Lee" in admin_errors(response)
    assert Patient.objects.filter(last_name="Lee").count() == 1


def test_a_treatment_taken_off_a_practitioner_over_booked_visits_is_said(clinic, patient, practitioner):
    """PractitionerAdmin.save_related says what a change leaves booked (hours, time off, switched off, moved): each
    "stay[s] booked until moved or cancelled". A microneedling booked with Dr Ada on 20 March, microneedling then
    taken off her treatments: the visit stays booked with someone the booking service would now refuse, and the
    admin says only that she was changed."""
    book(patient, ldn(2026, 3, 20), NOW)
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page = url(Practitioner, "change", practitioner.pk)

    response = site.post(page, {**as_rendered(site, page, Practitioner), "procedures": ["botox"]})

    assert response.status_code == 302
    assert list(practitioner.procedures.values_list("pk", flat=True)) == ["botox"]
    assert any("1 booked appointment still to come" in message for message in said(response)), said(response)


# --- What an administrator sees of another organisation ----------------------------------------------------------


def test_plan_templates_of_another_organisation_are_not_shown_to_an_administrator_who_may_look(clinic, other_clinic):
    """docs/plans.md: "only superusers change templates (clinic staff may look)"; the API lists only the caller's
    organisations' templates and the defaults (tests/api/test_tenancy_sweep.py). London's administrator, given the
    plans' view permission to look, sees New York's organisation's course, its source and notes, in the template list
    and as a choice of the treatment plans' filter."""
    plan_templates_load()
    theirs = PlanTemplate.objects.create(
        organisation=other_clinic.organisation, code="zorgon-course", name="Zorgon course", procedure_id="botox",
        sessions=2, min_gap_value=3, min_gap_unit="months", ideal_gap_value=14, ideal_gap_unit="weeks",
        max_gap_value=4, max_gap_unit="months", source="Zorgon practice",
    )  # fmt: skip
    site = admin_of("qa-ldn-admin", clinic=clinic)
    user_named("qa-ldn-admin").user_permissions.add(
        *Permission.objects.filter(content_type__app_label="plans", codename__startswith="view_")
    )
    templates = site.get(url(PlanTemplate, "changelist"))
    plans = site.get(url(TreatmentPlan, "changelist"))
    assert templates.status_code == plans.status_code == 200
    assert "microneedling-course" in templates.content.decode()  # the defaults are there to look at

    assert "Zorgon" not in templates.content.decode() + plans.content.decode()
    assert site.get(url(PlanTemplate, "change", theirs.pk)).status_code in (302, 403, 404)


def test_the_merge_trail_lists_only_the_organisations_an_administrator_administers(clinic, other_clinic, other_patient):
    """docs/organisations.md: "In the admin, a clinic administrator sees their clinics and the patients of their
    organisations". London's administrator also works at the New York clinic (another organisation) as a
    receptionist: the patients' admin lists none of New York's patients to them, the merge trail lists New York's
    merge, naming both records ("Other Persson merged into Other Person")."""
    twin = PatientFactory(clinic=other_clinic, first_name="Other", last_name="Persson")
    patient_merge(merged=twin, into=other_patient, now=NOW, actor_label="qa ny clinician", clinical=True)
    site = admin_of("qa-ldn-admin", clinic=clinic)
    StaffMembership.objects.create(user=user_named("qa-ldn-admin"), clinic=other_clinic, role=StaffRole.RECEPTIONIST)
    assert "Persson" not in site.get(url(Patient, "changelist") + "?merged_into__isempty=0").content.decode()

    merges = site.get(url(PatientMerge, "changelist"))

    assert merges.status_code == 200
    assert "Persson" not in merges.content.decode()


def test_an_organisations_rule_cannot_be_added_to_another_organisations_rule_book(clinic, other_clinic):
    """docs/rules.md: an organisation's administrators add "their organisation's rules"; the organisation field
    offers only theirs. London's administrator posts New York's organisation by hand: refused on the field, nothing
    added to New York's rule book; the same rule for their own organisation is added (the control)."""
    site = admin_of("qa-ldn-admin", clinic=clinic)
    page = url(IntervalRule, "add")
    rule = {
        "replaces": "",
        "earlier_procedure": "filler",
        "earlier_medication": "",
        "later_procedure": "filler",
        "gap_value": "3",
        "gap_unit": "weeks",
        "severity": "warn",
        "scope": "any_area",
        "basis": "practice",
        "source": "QA",
        "is_active": "on",
        "change_reason": "QA: filler top-ups",
    }
    data = {**as_rendered(site, page, IntervalRule), **rule}

    refused = site.post(page, {**data, "organisation": str(other_clinic.organisation_id)})
    added = site.post(page, {**data, "organisation": str(clinic.organisation_id)})

    assert refused.status_code == 200 and "valid choice" in admin_errors(refused)
    assert not IntervalRule.objects.filter(organisation=other_clinic.organisation).exists()
    assert added.status_code == 302, admin_errors(added)
    assert IntervalRule.objects.filter(organisation=clinic.organisation).count() == 1


def test_list_filters_naming_another_organisations_clinic_answer_without_a_500_or_its_rows(
    clinic, west, patient, practitioner, other_clinic, other_patient, other_practitioner
):
    """The brief: no 500 on odd GET parameters; docs/organisations.md: "anything of another organisation: not found".
    Every change list, asked by a site's and by an organisation's administrator to filter by New York's clinic or
    organisation (ids no choice offers them), answers below 500 and names none of New York's rows."""
    book(other_patient, nyc(2026, 3, 12), NOW, practitioner_id=other_practitioner.pk)
    clients = {
        "site": admin_of("qa-ldn-admin", clinic=clinic),
        "organisation": admin_of("qa-org-admin", organisation=clinic.organisation),
    }
    queries = [
        urlencode({"clinic__id__exact": other_clinic.pk}),
        urlencode({"organisation__id__exact": other_clinic.organisation_id}),
        urlencode({"appointment__clinic__id__exact": other_clinic.pk}),
    ]
    problems = []
    for who, client in clients.items():
        for model in admin.site._registry:
            for query in queries:
                response = client.get(f"{url(model, 'changelist')}?{query}")
                text = response.content.decode()
                if response.status_code >= 500 or "New York" in text or "Dr Elsewhere" in text:
                    problems.append(f"{who}: {model._meta.label}?{query} -> {response.status_code}")
    assert problems == []
