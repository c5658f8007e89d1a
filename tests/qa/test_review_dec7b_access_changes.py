"""Review probe (dec7b): access that changes while someone is using it.

A grant is read on every request (docs/frontdesk.md, "Permissions and tenancy": every clinic page resolves the clinic
from the user's memberships; docs/api.md, "Authentication and roles": a revoked or rotated key stops working at once;
docs/organisations.md, "Who sees what"). So the very next request after a change must see it: a staff member taken
off a clinic, downgraded from clinician to receptionist, deactivated or promoted to a role that needs two-step sign-in
while signed in; an API client revoked, rotated or losing a clinic or an organisation mid-use; an Idempotency-Key
replayed after the grant went (decided 6 December: the stored answer, nothing newer, and every new request held to
the scope as it stands); webhook deliveries of a clinic no longer granted; a clinic moved to another organisation;
a patient's calendar link renewed; a merged patient's manage link and feed. Nothing cached per process (the
configuration-version copies of scheduler/versioned.py, the statements compiled per connection by core.compiled) may
serve a grant that is gone, and no change may turn a request into a 500 or show another tenant's data.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from clinic.merging import patient_merge
from clinic.models import (
    ApiClient,
    Appointment,
    AppointmentStatus,
    Clinic,
    ConditionStatus,
    StaffMembership,
    StaffRole,
)
from reminders.links import manage_token
from reminders.models import CalendarFeed, OutboxMessage
from scheduler.booking import appointment_reschedule
from tests.api.conftest import http, new_api_client, session
from tests.factories import (
    ClinicFactory,
    OrganisationFactory,
    PatientConditionFactory,
    PatientFactory,
    PractitionerFactory,
)
from tests.qa.helpers import (
    API,
    CLINICIAN,
    NOW,
    RECEPTION,
    book,
    edited_while_another_process_holds_copies,
    fhir_json,
    fhir_outcome,
    ldn,
    problem,
    register_webhook,
    staff_client,
)

pytestmark = pytest.mark.usefixtures("clock", "message_outboxes")

VISIT = ldn(2026, 3, 10)


def desk(clinic, path: str = "") -> str:
    return f"/clinic/{clinic.code}/{path}"


def membership_of(client: Client) -> StaffMembership:
    user_id = client.session["_auth_user_id"]
    return StaffMembership.objects.get(user_id=user_id)


def pending_visit(patient) -> Appointment:
    """Microneedling held for a clinician's clearance (eczema in the patient's history: relative)."""
    PatientConditionFactory(patient=patient, condition_id="eczema", status=ConditionStatus.HISTORY)
    appointment = book(patient, VISIT, NOW)
    assert appointment.status == AppointmentStatus.PENDING_CLEARANCE
    return appointment


def status_of(appointment) -> str:
    return Appointment.objects.values_list("status", flat=True).get(pk=appointment.pk)


# --- Staff at the front desk ---------------------------------------------------------------------------------------


def test_a_receptionist_taken_off_the_clinic_is_refused_on_the_next_page_and_form(clinic, patient, practitioner):
    visit = book(patient, VISIT, NOW)
    desk_client = staff_client(clinic, StaffRole.RECEPTIONIST, "qa-dec7b-rec")
    assert desk_client.get(desk(clinic, f"appointments/{visit.pk}/")).status_code == 200

    membership_of(desk_client).delete()

    assert desk_client.get(desk(clinic)).status_code == 404
    assert desk_client.get(desk(clinic, f"patients/{patient.pk}/")).status_code == 404
    assert desk_client.get(desk(clinic, "calendar/events.json?start=2026-03-09&end=2026-03-16")).status_code == 404
    cancelled = desk_client.post(desk(clinic, f"appointments/{visit.pk}/cancel/"), {"reason": "left the clinic"})
    assert cancelled.status_code == 404
    assert status_of(visit) == AppointmentStatus.CONFIRMED
    assert patient.last_name not in cancelled.content.decode()


def test_a_clinician_downgraded_to_receptionist_cannot_clear_on_the_next_post(clinic, patient, practitioner):
    visit = pending_visit(patient)
    desk_client = staff_client(clinic, StaffRole.CLINICIAN, "qa-dec7b-clin")
    page = desk(clinic, f"appointments/{visit.pk}/")
    assert desk_client.get(page).status_code == 200

    StaffMembership.objects.filter(pk=membership_of(desk_client).pk).update(role=StaffRole.RECEPTIONIST)

    refused = desk_client.post(desk(clinic, f"appointments/{visit.pk}/clear/"), {"reason": "eczema quiet for years"})
    assert refused.status_code == 403
    assert status_of(visit) == AppointmentStatus.PENDING_CLEARANCE
    # The page itself is still theirs, as a receptionist's.
    assert desk_client.get(page).status_code == 200


def test_a_deactivated_user_is_signed_out_on_the_next_desk_and_api_request(clinic, patient, practitioner):
    visit = book(patient, VISIT, NOW)
    desk_client = staff_client(clinic, StaffRole.CLINICIAN, "qa-dec7b-gone")
    user = get_user_model().objects.get(username="qa-dec7b-gone")
    api_session = session(user)
    assert api_session.get(f"{API}/appointments/{visit.pk}/").status_code == 200

    user.is_active = False
    user.save(update_fields=["is_active"])

    page = desk_client.get(desk(clinic))
    assert page.status_code == 302 and page["Location"].startswith(reverse("frontdesk:login"))
    sent = desk_client.post(desk(clinic, f"appointments/{visit.pk}/cancel/"), {"reason": "x"})
    assert sent.status_code == 302 and sent["Location"].startswith(reverse("frontdesk:login"))
    assert status_of(visit) == AppointmentStatus.CONFIRMED
    read = api_session.get(f"{API}/appointments/{visit.pk}/")
    assert read.status_code in (401, 403), read.status_code
    assert patient.last_name not in read.content.decode()


def test_an_organisation_wide_role_removed_leaves_only_the_clinic_granted_by_name(clinic, west, patient, practitioner):
    user = get_user_model().objects.create_user(username="qa-dec7b-org", password="pw-for-qa-only-123")
    org_wide = StaffMembership.objects.create(user=user, organisation=clinic.organisation, role=StaffRole.RECEPTIONIST)
    StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
    desk_client = Client()
    desk_client.force_login(user)
    assert desk_client.get(desk(west)).status_code == 200

    org_wide.delete()

    assert desk_client.get(desk(west)).status_code == 404
    assert desk_client.get(desk(west, f"patients/{patient.pk}/")).status_code == 404
    assert desk_client.get(desk(clinic, f"patients/{patient.pk}/")).status_code == 200


def test_a_role_raised_to_clinic_administrator_needs_two_step_sign_in_on_the_next_request(
    settings, clinic, patient, practitioner
):
    settings.STAFF_TWO_FACTOR_REQUIRED = True
    desk_client = staff_client(clinic, StaffRole.RECEPTIONIST, "qa-dec7b-promoted")
    user = get_user_model().objects.get(username="qa-dec7b-promoted")
    api_session = session(user)
    assert desk_client.get(desk(clinic)).status_code == 200
    assert api_session.get(f"{API}/patients/{patient.pk}/").status_code == 200

    StaffMembership.objects.filter(user=user).update(role=StaffRole.CLINIC_ADMIN)

    page = desk_client.get(desk(clinic))
    assert page.status_code == 302 and page["Location"].startswith(reverse("frontdesk:two_factor"))
    problem(api_session.get(f"{API}/patients/{patient.pk}/"), 403, "two_factor_required")


def test_a_staff_session_on_the_api_loses_the_clinicians_right_on_the_next_request(clinic, patient, practitioner):
    visit = pending_visit(patient)
    user = get_user_model().objects.create_user(username="qa-dec7b-api-clin", password="pw-for-qa-only-123")
    membership = StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.CLINICIAN)
    api_session = session(user)
    assert api_session.get(f"{API}/appointments/{visit.pk}/").status_code == 200

    membership.role = StaffRole.RECEPTIONIST
    membership.save(update_fields=["role"])
    refused = api_session.post(f"{API}/appointments/{visit.pk}/clear/", {"reason": "quiet"}, format="json")
    assert problem(refused, 403)["code"] in ("clinician_required", "permission_denied")
    assert status_of(visit) == AppointmentStatus.PENDING_CLEARANCE

    membership.delete()
    problem(api_session.get(f"{API}/appointments/{visit.pk}/"), 403)  # no role at any clinic: 403 (docs/api.md)


# --- API clients --------------------------------------------------------------------------------------------------


def booking_body(patient, start="2026-03-10T10:00:00+00:00", procedure="botox") -> dict:
    return {"patient": str(patient.pk), "procedure": procedure, "start": start}


def test_a_revoked_key_is_refused_at_once_and_so_are_its_replays(clinic, patient, practitioner):
    platform, key = new_api_client(clinic, name="qa-dec7b-revoked")
    api = http(key)
    first = api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201, first.content

    ApiClient.objects.filter(pk=platform.pk).update(revoked_at=NOW)  # the admin's action, as a queryset update

    for response in (
        api.get(f"{API}/appointments/{first.json()['id']}/"),
        api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-1"),
        api.get(f"{API}/clinics/"),
    ):
        problem(response, 401)
        assert response["WWW-Authenticate"].startswith("Token")
        assert patient.last_name not in response.content.decode()
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_a_rotated_key_stops_at_once_and_the_new_one_keeps_the_clients_replays(clinic, patient, practitioner):
    platform, old_key = new_api_client(clinic, name="qa-dec7b-rotated")
    first = http(old_key).post(
        f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-rot"
    )
    assert first.status_code == 201, first.content

    new_key = platform.set_new_key()  # the admin's Rotate action
    platform.save(update_fields=["key_prefix", "key_hash"])

    problem(http(old_key).get(f"{API}/clinics/"), 401)
    replay = http(new_key).post(
        f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-rot"
    )
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_a_clinic_grant_removed_mid_use_hides_its_patients_and_appointments(clinic, patient, practitioner):
    platform, key = new_api_client(clinic, name="qa-dec7b-ungranted")
    api = http(key)
    visit = book(patient, VISIT, NOW)
    assert api.get(f"{API}/appointments/{visit.pk}/").status_code == 200
    assert api.get(f"{API}/patients/{patient.pk}/").status_code == 200

    platform.clinics.remove(clinic)

    # Granted nothing now: the key is known but reaches no clinic (403, "a known key without the permission"), or
    # a 404. Either way the answer for what exists is the answer for what never did, and carries nothing of it.
    made_up = "00000000-0000-4000-8000-000000000000"
    for real, invented in (
        (f"/appointments/{visit.pk}/", f"/appointments/{made_up}/"),
        (f"/patients/{patient.pk}/", f"/patients/{made_up}/"),
        (f"/patients/{patient.pk}/procedures/", f"/patients/{made_up}/procedures/"),
    ):
        seen, unseen = api.get(f"{API}{real}"), api.get(f"{API}{invented}")
        assert seen.status_code in (403, 404) and seen.status_code == unseen.status_code, (real, seen.content)
        assert problem(seen, seen.status_code)["code"] == problem(unseen, unseen.status_code)["code"]
        assert patient.last_name not in seen.content.decode()
    cancel = api.post(f"{API}/appointments/{visit.pk}/cancel/", {}, format="json")
    assert cancel.status_code in (403, 404)
    assert status_of(visit) == AppointmentStatus.CONFIRMED
    for path in ("/appointments/", "/patients/", "/clinics/", "/organisations/", "/practitioners/"):
        listing = api.get(f"{API}{path}")
        assert listing.status_code == 403 or listing.json()["count"] == 0, (path, listing.content[:300])
        assert patient.last_name not in listing.content.decode() and "Dr Ada" not in listing.content.decode()
    refused = api.post(f"{API}/appointments/", booking_body(patient, "2026-03-11T10:00:00+00:00"), format="json")
    assert refused.status_code in (400, 403) and Appointment.objects.filter(patient=patient).count() == 1


def test_a_clinic_grant_removed_while_a_sister_site_stays_keeps_the_record_but_not_the_appointment(
    clinic, west, patient, practitioner
):
    platform, key = new_api_client(clinic, west, name="qa-dec7b-sister")
    api = http(key)
    visit = book(patient, VISIT, NOW)
    assert api.get(f"{API}/appointments/{visit.pk}/").status_code == 200

    platform.clinics.remove(clinic)

    assert api.get(f"{API}/patients/{patient.pk}/").status_code == 200  # the record is the organisation's
    problem(api.get(f"{API}/appointments/{visit.pk}/"), 404)
    problem(api.post(f"{API}/appointments/{visit.pk}/reschedule/", {"start": "2026-03-12T10:00:00+00:00"}), 404)
    listed = api.get(f"{API}/appointments/?patient={patient.pk}").json()
    assert listed["count"] == 0
    assert [c["code"] for c in api.get(f"{API}/clinics/").json()["results"]] == ["west"]
    assert Appointment.objects.get(pk=visit.pk).start_at == VISIT


def test_a_replay_after_the_grant_went_repeats_the_stored_answer_and_nothing_newer(
    clinic, other_clinic, patient, practitioner
):
    # The client keeps a clinic of another organisation: still a caller with a scope, just not this one.
    platform, key = new_api_client(clinic, other_clinic, name="qa-dec7b-replay")
    api = http(key)
    first = api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-old")
    assert first.status_code == 201, first.content
    visit = Appointment.objects.get(pk=first.json()["id"])
    appointment_reschedule(appointment=visit, start_at=ldn(2026, 3, 12, 15), actor=RECEPTION, now=NOW)

    platform.clinics.remove(clinic)

    replay = api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-old")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content  # the desk's later move is not disclosed
    assert "2026-03-12" not in replay.content.decode()
    fresh_key = api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-new")
    assert problem(fresh_key, 400)["code"] == "unknown_patient"
    assert Appointment.objects.filter(patient=patient).count() == 1


def test_a_replay_after_the_last_grant_went_still_answers_what_was_done(clinic, patient, practitioner):
    # docs/api.md, "Idempotency": a clinic withdrawn since still has its replay give the stored answer. A platform
    # that lost its only clinic retries a booking whose answer it never got: the replay is how it learns whether it
    # was made (and so whether to tell the patient).
    platform, key = new_api_client(clinic, name="qa-dec7b-last-grant")
    api = http(key)
    first = api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-last")
    assert first.status_code == 201, first.content

    platform.clinics.clear()

    replay = api.post(f"{API}/appointments/", booking_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-last")
    assert replay.status_code != 500
    assert (replay.status_code, replay.content) == (first.status_code, first.content)


def test_fhir_reads_of_a_clinic_taken_away_are_not_found_on_the_next_request(
    clinic, other_clinic, patient, practitioner
):
    platform, key = new_api_client(clinic, other_clinic, name="qa-dec7b-fhir")
    fhir = http(key)
    visit = book(patient, VISIT, NOW)
    assert fhir_json(fhir.get(f"/fhir/r4/Appointment/{visit.pk}"))["id"] == str(visit.pk)

    platform.clinics.remove(clinic)

    fhir_outcome(fhir.get(f"/fhir/r4/Appointment/{visit.pk}"), 404)
    bundle = fhir_json(fhir.get("/fhir/r4/Appointment?date=ge2026-03-01"))
    assert str(visit.pk) not in str(bundle) and patient.last_name not in str(bundle)


def test_an_organisation_grant_removed_mid_use_reaches_none_of_its_clinics(
    clinic, west, other_clinic, patient, practitioner
):
    platform, key = new_api_client(other_clinic, name="qa-dec7b-org-grant")
    platform.organisations.add(clinic.organisation)
    api = http(key)
    visit = book(patient, VISIT, NOW)
    assert api.get(f"{API}/clinics/").json()["count"] == 3
    assert api.get(f"{API}/appointments/{visit.pk}/").status_code == 200

    platform.organisations.remove(clinic.organisation)

    assert [c["code"] for c in api.get(f"{API}/clinics/").json()["results"]] == ["newyork"]
    assert [o["id"] for o in api.get(f"{API}/organisations/").json()["results"]] == [str(other_clinic.organisation_id)]
    problem(api.get(f"{API}/appointments/{visit.pk}/"), 404)
    problem(api.get(f"{API}/patients/{patient.pk}/"), 404)


def test_a_clinic_opened_in_a_granted_organisation_is_reached_on_the_next_request(clinic, patient, practitioner):
    platform, key = new_api_client(name="qa-dec7b-later")
    platform.organisations.add(clinic.organisation)
    api = http(key)
    assert [c["code"] for c in api.get(f"{API}/clinics/").json()["results"]] == ["london"]

    annex = ClinicFactory(code="annex", name="Annex", organisation=clinic.organisation)
    PractitionerFactory(clinic=annex, name="Dr Annex")

    assert sorted(c["code"] for c in api.get(f"{API}/clinics/").json()["results"]) == ["annex", "london"]
    booked = api.post(f"{API}/appointments/", {**booking_body(patient), "clinic": "annex"}, format="json")
    assert booked.status_code == 201, booked.content
    assert booked.json()["clinic"] == str(annex.pk)


def test_a_plan_at_a_clinic_no_longer_granted_is_not_found(platform_ready, clinic, other_clinic, patient, practitioner):
    platform, key = new_api_client(clinic, other_clinic, name="qa-dec7b-plans")
    api = http(key)
    made = api.post(
        f"{API}/patients/{patient.pk}/plans/",
        {"template": "microneedling-course", "start_from": "2026-03-09"},
        format="json",
    )
    assert made.status_code == 201, made.content
    plan_id = made.json()["id"]

    platform.clinics.remove(clinic)

    problem(api.get(f"{API}/plans/{plan_id}/"), 404)
    problem(api.post(f"{API}/plans/{plan_id}/cancel/", {}, format="json"), 404)
    problem(api.post(f"{API}/plans/{plan_id}/replan/", {"from_session": 2, "start": "2026-04-20T10:00:00+01:00"}), 404)
    assert not Appointment.objects.filter(patient=patient, status=AppointmentStatus.CANCELLED).exists()


# --- Webhooks -----------------------------------------------------------------------------------------------------


def webhook_rows(appointment, endpoint_id) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(appointment=appointment, endpoint_id=endpoint_id, channel="webhook"))


def test_deliveries_of_a_clinic_taken_away_are_not_listed_nor_redelivered(
    platform_ready, clinic, other_clinic, patient, practitioner
):
    platform, key = new_api_client(clinic, other_clinic, name="qa-dec7b-hooks")
    api = http(key)
    endpoint = register_webhook(api, "http://127.0.0.1:9/in")
    visit = book(patient, VISIT, NOW)
    [delivery] = webhook_rows(visit, endpoint["id"])
    listed = api.get(f"{API}/webhooks/{endpoint['id']}/deliveries/").json()
    assert [d["id"] for d in listed["results"]] == [str(delivery.pk)]

    platform.clinics.remove(clinic)

    listed = api.get(f"{API}/webhooks/{endpoint['id']}/deliveries/")
    assert listed.status_code == 200 and listed.json()["count"] == 0
    assert patient.last_name not in listed.content.decode()
    again = api.post(f"{API}/webhooks/{endpoint['id']}/deliveries/{delivery.pk}/redeliver/", {}, format="json")
    assert problem(again, 404)["code"] == "unknown_webhook_delivery"


def test_an_organisation_grant_taken_away_stops_the_next_bookings_deliveries_in_a_process_that_cached_them(
    platform_ready, clinic, west, patient, practitioner
):
    platform, key = new_api_client(name="qa-dec7b-org-hooks")
    platform.organisations.add(clinic.organisation)
    endpoint = register_webhook(http(key), "http://127.0.0.1:9/in")
    assert webhook_rows(book(patient, VISIT, NOW), endpoint["id"])

    with edited_while_another_process_holds_copies("webhook-subscriptions"):
        platform.organisations.remove(clinic.organisation)

    later = book(PatientFactory(clinic=clinic), ldn(2026, 3, 12), NOW)
    assert webhook_rows(later, endpoint["id"]) == []


def test_a_clinic_moved_to_another_organisation_leaves_the_old_organisations_grants(
    platform_ready, clinic, patient, practitioner
):
    # Set up under the wrong organisation: nothing of its own yet, so it may move (docs/organisations.md).
    annex = ClinicFactory(code="annex2", name="Annex Two", organisation=clinic.organisation)
    PractitionerFactory(clinic=annex, name="Dr Annex")
    org_staff = get_user_model().objects.create_user(username="qa-dec7b-orgwide", password="pw-for-qa-only-123")
    StaffMembership.objects.create(user=org_staff, organisation=clinic.organisation, role=StaffRole.RECEPTIONIST)
    org_desk = Client()
    org_desk.force_login(org_staff)
    org_platform, org_key = new_api_client(name="qa-dec7b-old-org")
    org_platform.organisations.add(clinic.organisation)
    org_hook = register_webhook(http(org_key), "http://127.0.0.1:9/org")
    annex_platform, annex_key = new_api_client(annex, name="qa-dec7b-annex")
    assert org_desk.get(desk(annex)).status_code == 200
    assert http(annex_key).get(f"{API}/patients/{patient.pk}/").status_code == 200

    # This process now holds the webhook subscriptions (a booking read them); moving a clinic writes no grant, so
    # the copy stays: the organisation must be read from the clinic as it stands, not from the copy.
    assert webhook_rows(book(patient, VISIT, NOW), org_hook["id"])
    elsewhere = OrganisationFactory(code="qa-dec7b-elsewhere")
    moved = Clinic.objects.get(pk=annex.pk)
    moved.organisation = elsewhere
    moved.full_clean()
    moved.save()

    assert org_desk.get(desk(annex)).status_code == 404
    assert "annex2" not in [c["code"] for c in http(org_key).get(f"{API}/clinics/").json()["results"]]
    # The annex's own platform now reaches the new organisation's patients only.
    problem(http(annex_key).get(f"{API}/patients/{patient.pk}/"), 404)
    newcomer = PatientFactory(clinic=annex, first_name="New", last_name="Comer")
    assert http(annex_key).get(f"{API}/patients/{newcomer.pk}/").status_code == 200
    visit = book(newcomer, VISIT, NOW)
    assert webhook_rows(visit, org_hook["id"]) == []


# --- Patients: calendar links and merged records ---------------------------------------------------------------------


def feed_of(url: str) -> str:
    return url.split("https://clinic.example", 1)[1]


def test_a_renewed_calendar_link_refuses_the_old_one_at_once(clinic, patient, practitioner):
    visit = book(patient, VISIT, NOW)
    token = manage_token(visit)
    answer = Client().post(reverse("portal:calendar", args=[token]), follow=True)
    old_url = next(m.message for m in answer.context["messages"]).split('href="')[2].split('"')[0]
    old_path = feed_of(old_url)
    assert Client().get(old_path).status_code == 200

    again = Client().post(reverse("portal:calendar", args=[token]), follow=True)
    new_path = feed_of(next(m.message for m in again.context["messages"]).split('href="')[2].split('"')[0])

    assert new_path != old_path
    assert Client().get(old_path).status_code == 404
    live = Client().get(new_path)
    assert live.status_code == 200 and b"BEGIN:VEVENT" in live.content


def test_a_merged_records_manage_link_and_calendar_link_follow_the_survivor(clinic, patient, practitioner):
    duplicate = PatientFactory(clinic=clinic, first_name="Patricia", last_name="Lee", email="pl@example.com")
    visit = book(duplicate, VISIT, NOW)
    token = manage_token(visit)
    answer = Client().post(reverse("portal:calendar", args=[token]), follow=True)
    old_feed = feed_of(next(m.message for m in answer.context["messages"]).split('href="')[2].split('"')[0])

    patient_merge(merged=duplicate, into=patient, now=NOW, actor_label="qa", clinical=CLINICIAN.clinical)

    page = Client().get(reverse("portal:manage", args=[token]))
    assert page.status_code == 200  # the link names the appointment, which moved with the record
    feed = Client().get(old_feed)
    assert feed.status_code == 200 and b"BEGIN:VEVENT" in feed.content  # feeds move to the survivor
    # Asking for a new link from that page ends every link of the survivor's, the moved one included.
    Client().post(reverse("portal:calendar", args=[token]))
    assert Client().get(old_feed).status_code == 404
    assert CalendarFeed.objects.filter(patient=patient, revoked_at__isnull=True).count() == 1
