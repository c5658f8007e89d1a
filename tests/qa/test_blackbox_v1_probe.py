"""Black-box probe of the contract's "v1 additions" and the domain brief's section 6 ("Beyond one booking"), as an
outside team would write it: only the public HTTP API (DRF's APIClient with `Authorization: Token <key>`), keys made
with `create_api_client` as the contract says; factories only for what a platform cannot do over the API (clinics,
organisations, practitioners, the shipped templates and texts, an organisation administrator's rule change).

What is right is decided from /work/shared/api-contract.md and /work/shared/domain.md; /work/main/docs/api.md only
for what the contract leaves to the service (error codes, field details). The suite's clock: Monday 2 March 2026,
09:00 UTC (London on GMT until Sunday 29 March 01:00 UTC; New York on EST until Sunday 8 March).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command
from rest_framework.test import APIClient

from scheduler import rulebooks
from scheduler.models import ContraindicationRule, IntervalRule
from tests.conftest import CLOCK
from tests.factories import ClinicFactory, OrganisationFactory, PractitionerFactory
from tests.qa.helpers import API, get, ok, problem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("ticking_clock")]


# --- The world: organisation "chain" (London and West sites, a New York site), organisation "solo" ------------


@pytest.fixture
def world(platform_ready):
    chain = OrganisationFactory(code="chain", name="Chain Aesthetics")
    london = ClinicFactory(code="chain-london", name="Chain London", timezone="Europe/London", organisation=chain)
    west = ClinicFactory(code="chain-west", name="Chain West", timezone="Europe/London", organisation=chain)
    ny = ClinicFactory(code="chain-ny", name="Chain New York", timezone="America/New_York", organisation=chain)
    solo = ClinicFactory(code="solo", name="Solo Clinic", timezone="Europe/London")
    w = {
        "chain": chain,
        "london": london,
        "west": west,
        "ny": ny,
        "solo": solo,
        "dr_london": PractitionerFactory(clinic=london, name="Dr London"),
        "dr_west": PractitionerFactory(clinic=west, name="Dr West"),
        "dr_ny": PractitionerFactory(clinic=ny, name="Dr New York"),
        "dr_solo": PractitionerFactory(clinic=solo, name="Dr Solo"),
        "org": client_for("org-platform", "--organisation", "chain"),
        "clinical": client_for("org-clinical", "--organisation", "chain", "--clinical"),
        "lon": client_for("london-platform", "--clinic", "chain-london"),
        "wst": client_for("west-platform", "--clinic", "chain-west"),
        "two": client_for("west-and-ny-platform", "--clinic", "chain-west", "--clinic", "chain-ny"),
        "sol": client_for("solo-platform", "--clinic", "solo", "--clinical"),
    }
    return w


def client_for(name: str, *grants: str) -> APIClient:
    """An API client made as the contract says (`create_api_client`), its key taken from the last line."""
    out = StringIO()
    call_command("create_api_client", name, *grants, stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def post(client, path, body, status=None):
    response = client.post(f"{API}{path}", body, format="json")
    return ok(response, status) if status else response


def register(client, clinic, first, last, dob="1980-01-01", **extra) -> str:
    """A patient registered over the API at `clinic` (confirmed as new); their id."""
    body = {
        "clinic": str(clinic.pk),
        "first_name": first,
        "last_name": last,
        "date_of_birth": dob,
        "email": f"{first.lower()}.{last.lower()}.{uuid.uuid4().hex[:6]}@example.com",
        "reminder_channels": ["email"],
        "confirm_new": True,
        **extra,
    }
    return post(client, "/patients/", body, 201)["id"]


def book(client, patient, procedure, start, status=201, **extra):
    response = post(client, "/appointments/", {"patient": patient, "procedure": procedure, "start": start, **extra})
    if status == 409:
        return problem(response, 409)
    return ok(response, status)


def check(client, patient, procedure, start, **extra) -> dict:
    return post(client, "/eligibility/", {"patient": patient, "procedure": procedure, "start": start, **extra}, 200)


def appointment(client, appointment_id) -> dict:
    return get(client, f"/appointments/{appointment_id}/")


def pre_care(detail) -> list[str]:
    """The statuses of an appointment's pre-care reminders (the contract: held while it needs review)."""
    return [r["status"] for r in detail["reminders"] if r["kind"] == "pre_care"]


def hook(client) -> str:
    return post(client, "/webhooks/", {"url": "https://127.0.0.1:9/qa-hook"}, 201)["id"]


def events(client, endpoint, appointment_id) -> list[str]:
    """The webhook events delivered (or due) for one appointment, oldest first."""
    rows = get(client, f"/webhooks/{endpoint}/deliveries/?page_size=200")["results"]
    return [r["event"] for r in sorted(rows, key=lambda r: r["sequence"] or 0) if r["appointment"] == appointment_id]


def org_rule_save(rule, reason, capture):
    """An organisation administrator's rule change (no API for it); its re-check runs once it commits."""
    with capture(execute=True):
        return rulebooks.rule_save(rule=rule, user=None, reason=reason, now=CLOCK)


def override(organisation, default_key, **fields) -> IntervalRule:
    default = IntervalRule.objects.get(default_key=default_key, organisation__isnull=True)
    return IntervalRule(
        organisation=organisation,
        replaces=default,
        earlier_procedure_id=default.earlier_procedure_id,
        earlier_medication_id=default.earlier_medication_id,
        later_procedure_id=default.later_procedure_id,
        gap_value=fields.pop("gap_value", default.gap_value),
        gap_unit=fields.pop("gap_unit", default.gap_unit),
        severity=fields.pop("severity", default.severity),
        scope=default.scope,
        source="Chain protocol (QA)",
        **fields,
    )


# --- Organisations and scope ---------------------------------------------------------------------------------


def test_organisations_list_and_clinics_name_their_organisation_in_scope_only(world):
    chain_id = str(world["chain"].pk)
    orgs = get(world["org"], "/organisations/")
    assert {"count", "next", "previous", "results"} <= set(orgs)
    assert [(o["id"], o["code"]) for o in orgs["results"]] == [(chain_id, "chain")]
    assert set(orgs["results"][0]) >= {"id", "code", "name"}
    clinics = get(world["org"], "/clinics/")["results"]
    assert {c["code"] for c in clinics} == {"chain-london", "chain-west", "chain-ny"}
    assert {c["organisation"] for c in clinics} == {chain_id}
    # a single-site key reaches the organisation of its site, and only that site
    assert [o["code"] for o in get(world["wst"], "/organisations/")["results"]] == ["chain"]
    assert [c["code"] for c in get(world["wst"], "/clinics/")["results"]] == ["chain-west"]
    solo = get(world["sol"], "/organisations/")["results"]
    assert len(solo) == 1 and solo[0]["id"] != chain_id
    assert [c["code"] for c in get(world["sol"], "/clinics/")["results"]] == ["solo"]
    problem(APIClient().get(f"{API}/organisations/"), 401)


def test_an_organisation_grant_reaches_a_clinic_opened_later(world):
    ClinicFactory(code="chain-east", timezone="Europe/London", organisation=world["chain"])
    codes = {c["code"] for c in get(world["org"], "/clinics/")["results"]}
    assert "chain-east" in codes
    assert "chain-east" not in {c["code"] for c in get(world["lon"], "/clinics/")["results"]}


def test_one_record_shared_by_the_sites_and_invisible_to_another_organisation(world):
    lon, wst, sol = world["lon"], world["wst"], world["sol"]
    pid = register(lon, world["london"], "Hana", "Okafor")
    post(lon, f"/patients/{pid}/procedures/", {"procedure": "botox", "performed_at": "2026-02-20T10:00:00+00:00"}, 201)
    post(lon, f"/patients/{pid}/medications/", {"drug": "topical_retinoid", "started_on": "2026-01-05"}, 201)
    ok(lon.put(f"{API}/patients/{pid}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"))

    seen = get(wst, f"/patients/{pid}/")
    assert seen["organisation"] == str(world["chain"].pk) and seen["clinic"] == str(world["london"].pk)
    assert [r["procedure"] for r in get(wst, f"/patients/{pid}/procedures/")["results"]] == ["botox"]
    assert [m["drug"] for m in get(wst, f"/patients/{pid}/medications/")["results"]] == ["topical_retinoid"]
    intake = get(wst, f"/patients/{pid}/conditions/")
    intake = intake["results"] if isinstance(intake, dict) else intake
    assert [(c["condition"], c["status"]) for c in intake] == [("eczema", "history")]
    assert pid in {p["id"] for p in get(wst, "/patients/?page_size=200")["results"]}
    # a sister site adds to the one record
    post(wst, f"/patients/{pid}/procedures/", {"procedure": "filler", "performed_at": "2026-02-21T10:00:00+00:00"}, 201)
    assert len(get(lon, f"/patients/{pid}/procedures/")["results"]) == 2

    for path in ("/", "/procedures/", "/medications/", "/conditions/"):
        problem(sol.get(f"{API}/patients/{pid}{path}"), 404)
    problem(sol.patch(f"{API}/patients/{pid}/", {"first_name": "X"}, format="json"), 404)
    problem(post(sol, f"/patients/{pid}/procedures/", {"procedure": "botox", "performed_at": "2026-02-22T10:00Z"}), 404)
    assert pid not in {p["id"] for p in get(sol, "/patients/?page_size=200")["results"]}
    assert len(get(lon, f"/patients/{pid}/procedures/")["results"]) == 2
    # in a body: exactly what an id that never existed gets (nothing is revealed)
    theirs = post(sol, "/eligibility/", {"patient": pid, "procedure": "botox", "start": "2026-03-10T10:00:00Z"})
    nobody = post(
        sol, "/eligibility/", {"patient": str(uuid.uuid4()), "procedure": "botox", "start": "2026-03-10T10:00Z"}
    )
    assert theirs.status_code == nobody.status_code and theirs.status_code in (400, 404)
    assert theirs.json().get("errors") == nobody.json().get("errors")


def test_a_sister_sites_booking_refuses_here_names_its_clinic_and_stays_out_of_reach(world):
    lon, wst = world["lon"], world["wst"]
    pid = register(lon, world["london"], "Ines", "Moreau")
    botox = book(wst, pid, "botox", "2026-03-10T10:00:00+00:00", practitioner=str(world["dr_west"].pk))
    assert botox["clinic"] == str(world["west"].pk) and botox["status"] == "confirmed"

    refusal = book(lon, pid, "microneedling", "2026-03-20T10:00:00+00:00", status=409)
    assert "rulebook_version" in refusal and refusal["rulebook_version"]
    [violation] = [v for v in refusal["violations"] if v["kind"] == "interval"]
    assert violation["severity"] == "block"
    conflict = violation["conflicts_with"]
    assert conflict["id"] == botox["id"] and conflict["code"] == "botox"
    assert conflict["clinic"] == str(world["west"].pk)
    assert conflict["at"] == "2026-03-10T10:00:00+00:00"
    assert {"id", "kind", "code", "at", "clinic"} <= set(conflict)
    assert refusal["earliest_eligible_start"] == "2026-03-24T00:00:00+00:00"  # 10 March + 2 weeks, that local day

    problem(lon.get(f"{API}/appointments/{botox['id']}/"), 404)
    problem(post(lon, f"/appointments/{botox['id']}/cancel/", {}), 404)
    assert botox["id"] not in {a["id"] for a in get(lon, f"/appointments/?patient={pid}")["results"]}
    # availability offers nothing before that day either
    query = (
        f"patient={pid}&procedure=microneedling&clinic=chain-london&from=2026-03-16T00:00:00Z&to=2026-03-27T00:00:00Z"
    )
    slots = get(lon, f"/availability/?{query}")
    slots = slots["results"] if isinstance(slots, dict) else slots
    assert slots and slots[0]["start"] == "2026-03-24T09:00:00+00:00", slots[:2]
    assert all(slot["start"] >= "2026-03-24" for slot in slots)
    # the first local day the rule allows, at the first hour of work
    here = book(lon, pid, "microneedling", "2026-03-24T09:00:00+00:00")
    assert here["status"] == "confirmed"
    # an organisation-wide key lists both sites' appointments; each site's key its own
    assert {a["id"] for a in get(world["org"], f"/appointments/?patient={pid}")["results"]} == {botox["id"], here["id"]}
    assert [a["id"] for a in get(wst, f"/appointments/?patient={pid}")["results"]] == [botox["id"]]


def test_a_single_site_platform_gets_no_webhook_for_the_sister_sites_appointments(world):
    lon, wst, org = world["lon"], world["wst"], world["org"]
    west_hook, org_hook = hook(wst), hook(org)
    pid = register(lon, world["london"], "Cyd", "Marlow")
    here = book(lon, pid, "microneedling", "2026-03-12T10:00:00+00:00")
    post(wst, f"/patients/{pid}/procedures/", {"procedure": "botox", "performed_at": "2026-03-02T08:00:00+00:00"}, 201)
    assert appointment(lon, here["id"])["status"] == "needs_review"
    assert events(org, org_hook, here["id"]) == ["appointment.created", "appointment.needs_review"]
    assert events(wst, west_hook, here["id"]) == []  # it cannot see that appointment, so it is not told of it


def test_a_booking_cancelled_at_the_sister_site_stops_counting_here(world):
    lon, wst = world["lon"], world["wst"]
    pid = register(lon, world["london"], "Juno", "Park")
    botox = book(wst, pid, "botox", "2026-03-10T10:00:00+00:00", practitioner=str(world["dr_west"].pk))
    assert check(lon, pid, "microneedling", "2026-03-12T10:00:00+00:00")["eligible"] is False
    ok(wst.post(f"{API}/appointments/{botox['id']}/cancel/", {"reason": "patient asked"}, format="json"))
    answer = check(lon, pid, "microneedling", "2026-03-12T10:00:00+00:00")
    assert (answer["eligible"], answer["status"], answer["violations"]) == (True, "confirmed", [])
    assert book(lon, pid, "microneedling", "2026-03-12T10:00:00+00:00")["status"] == "confirmed"


def test_where_a_booking_takes_place_when_the_caller_reaches_several_clinics(world):
    two = world["two"]
    pid = register(world["lon"], world["london"], "Kai", "Lindqvist")
    # several clinics reached, none named, no practitioner: 400 naming the field
    body = problem(
        post(two, "/appointments/", {"patient": pid, "procedure": "botox", "start": "2026-03-03T10:00Z"}), 400
    )
    assert "clinic" in body["errors"], body
    # a clinic that is not the practitioner's: 400
    bad = {"clinic": str(world["west"].pk), "practitioner": str(world["dr_ny"].pk)}
    body = problem(
        post(two, "/appointments/", {"patient": pid, "procedure": "botox", "start": "2026-03-03T15:00Z", **bad}), 400
    )
    assert "clinic" in body["errors"], body
    # another organisation's clinic: 400, nothing booked
    other = {"clinic": str(world["solo"].pk)}
    body = problem(
        post(two, "/appointments/", {"patient": pid, "procedure": "botox", "start": "2026-03-03T10:00Z", **other}), 400
    )
    assert "clinic" in body["errors"], body
    assert get(two, f"/appointments/?patient={pid}")["count"] == 0

    at_west = book(two, pid, "botox", "2026-03-03T10:00:00+00:00", clinic=str(world["west"].pk))
    assert (at_west["clinic"], at_west["practitioner"]) == (str(world["west"].pk), str(world["dr_west"].pk))
    # the practitioner names the place; the answer is in that clinic's offset (New York on EDT from 8 March)
    at_ny = book(two, pid, "filler", "2026-03-10T14:00:00+00:00", practitioner=str(world["dr_ny"].pk))
    assert at_ny["clinic"] == str(world["ny"].pk)
    assert at_ny["start"] == "2026-03-10T10:00:00-04:00"


# --- Duplicates ------------------------------------------------------------------------------------------------


OLIVIA = {"first_name": "Olivia", "last_name": "Bennett", "date_of_birth": "1985-06-18"}


@pytest.mark.parametrize(
    "site, changes, reason",
    [
        ("lon", {"last_name": "Benett"}, "date_of_birth_and_name"),
        ("lon", {"first_name": "Bennett", "last_name": "Olivia"}, "date_of_birth_and_name"),
        ("wst", {"first_name": "OLIVIA", "last_name": "bennett"}, "date_of_birth_and_name"),
        ("lon", {"first_name": "Olívia", "last_name": "Bennétt"}, "date_of_birth_and_name"),
        (
            "wst",
            {"first_name": "Zed", "last_name": "Quinn", "date_of_birth": "1970-01-01", "phone": "+447911123456"},
            "phone",
        ),
        (
            "org",
            {"first_name": "Zed", "last_name": "Quinn", "date_of_birth": "1970-01-01", "email": "OLIVIA.B@Example.COM"},
            "email",
        ),
    ],
    ids=["typo", "swapped", "case-at-sister-site", "accents", "phone", "email-case"],
)
def test_a_likely_duplicate_is_a_409_with_candidates_until_confirmed(world, site, changes, reason):
    olivia = post(
        world["lon"],
        "/patients/",
        {**OLIVIA, "clinic": str(world["london"].pk), "email": "olivia.b@example.com", "phone": "+447911123456"},
        201,
    )
    caller = world[site]
    home = {"lon": world["london"], "wst": world["west"], "org": world["west"]}[site]
    body = {**OLIVIA, "clinic": str(home.pk), "email": "someone.else@example.com", "phone": "+447911123457", **changes}
    refusal = problem(post(caller, "/patients/", body), 409, "possible_duplicate")
    assert refusal["type"].endswith("possible-duplicate"), refusal["type"]
    [candidate] = refusal["candidates"]
    assert candidate["id"] == olivia["id"]
    assert (candidate["first_name"], candidate["last_name"], candidate["date_of_birth"]) == (
        "Olivia",
        "Bennett",
        "1985-06-18",
    )
    assert reason in candidate["reasons"], candidate
    assert get(world["org"], "/patients/")["count"] == 1  # nothing registered
    created = post(caller, "/patients/", {**body, "confirm_new": True}, 201)
    assert created["id"] != olivia["id"] and created["organisation"] == str(world["chain"].pk)


@pytest.mark.parametrize(
    "changes, reasons",
    [
        ({"phone": "07911 123456"}, {"phone"}),
        ({"email": "  Olivia.B@EXAMPLE.com "}, {"email"}),
        ({**OLIVIA, "email": "olivia.b@example.com"}, {"date_of_birth_and_name", "email"}),
    ],
    ids=["phone-typed-locally", "email-spaces-and-case", "several-reasons"],
)
def test_a_duplicate_is_found_whatever_the_format_and_says_every_reason(world, changes, reasons):
    body = {**OLIVIA, "clinic": str(world["london"].pk), "email": "olivia.b@example.com", "phone": "+447911123456"}
    olivia = post(world["lon"], "/patients/", body, 201)
    other = {"first_name": "Zed", "last_name": "Quinn", "date_of_birth": "1970-01-01", "clinic": str(world["west"].pk)}
    refusal = problem(post(world["wst"], "/patients/", {**other, **changes}), 409, "possible_duplicate")
    [candidate] = refusal["candidates"]
    assert candidate["id"] == olivia["id"] and set(candidate["reasons"]) == reasons, candidate


def test_another_organisations_patient_is_never_a_candidate_and_a_different_person_registers(world):
    post(world["lon"], "/patients/", {**OLIVIA, "clinic": str(world["london"].pk), "phone": "+447911123456"}, 201)
    # the same person at another organisation: a new record there, no candidates leak
    theirs = post(world["sol"], "/patients/", {**OLIVIA, "clinic": str(world["solo"].pk), "phone": "+447911123456"})
    assert theirs.status_code == 201, theirs.content
    # same birthday, unrelated name and contacts: not a duplicate
    other = {"first_name": "Marcus", "last_name": "Whitfield", "date_of_birth": "1985-06-18"}
    assert post(world["wst"], "/patients/", {**other, "clinic": str(world["west"].pk)}).status_code == 201


# --- Merging -------------------------------------------------------------------------------------------------


def test_a_merge_unions_the_history_flags_what_is_booked_and_redirects_the_old_record(world):
    lon, clinical = world["lon"], world["clinical"]
    endpoint = hook(clinical)
    gone = register(lon, world["london"], "Nora", "Fitzgerald", dob="1990-02-02")
    survivor = register(lon, world["london"], "Norah", "Fitzgerald", dob="1990-02-02")
    post(lon, f"/patients/{gone}/procedures/", {"procedure": "botox", "performed_at": "2026-03-01T16:00:00+00:00"}, 201)
    mn = book(lon, survivor, "microneedling", "2026-03-09T10:00:00+00:00")
    assert mn["status"] == "confirmed"

    problem(post(world["org"], f"/patients/{gone}/merge/", {"into": survivor}), 403)
    merged = post(clinical, f"/patients/{gone}/merge/", {"into": survivor}, 200)
    assert merged["id"] == survivor

    assert [r["procedure"] for r in get(lon, f"/patients/{survivor}/procedures/")["results"]] == ["botox"]
    after = appointment(lon, mn["id"])
    assert after["status"] == "needs_review"
    [reason] = after["review_reasons"]
    assert {"code", "kind", "severity", "message", "rule", "conflicts_with", "earliest_allowed"} <= set(reason)
    assert (reason["kind"], reason["severity"], reason["conflicts_with"]["code"]) == ("interval", "block", "botox")
    assert reason["earliest_allowed"] == "2026-03-15T00:00:00+00:00"  # 1 March + 2 weeks, whatever the hour
    assert "appointment.needs_review" in events(clinical, endpoint, mn["id"])

    moved = lon.get(f"{API}/patients/{gone}/")
    assert moved.status_code == 308 and survivor in moved["Location"]
    assert gone not in {p["id"] for p in get(lon, "/patients/?page_size=200")["results"]}
    # registering the person again finds the survivor only, never the tombstone
    again = {
        "first_name": "Nora",
        "last_name": "Fitzgerald",
        "date_of_birth": "1990-02-02",
        "clinic": str(world["west"].pk),
    }
    dup = problem(post(world["wst"], "/patients/", again), 409, "possible_duplicate")
    assert [c["id"] for c in dup["candidates"]] == [survivor]
    # the old id is no longer a patient one can book for
    assert (
        post(lon, "/appointments/", {"patient": gone, "procedure": "botox", "start": "2026-04-01T10:00Z"}).status_code
        == 400
    )


def test_a_merge_brings_the_other_records_bookings_and_intake_under_the_survivors_history(world):
    lon, wst, clinical = world["lon"], world["wst"], world["clinical"]
    gone = register(lon, world["london"], "Pema", "Lhamo", dob="1992-07-07")
    survivor = register(lon, world["london"], "Pema", "Lhamo", dob="1992-07-07")
    post(lon, f"/patients/{survivor}/procedures/", {"procedure": "filler", "performed_at": "2026-02-20T10:00Z"}, 201)
    mn = book(wst, gone, "microneedling", "2026-03-10T10:00:00+00:00", practitioner=str(world["dr_west"].pk))
    pp = book(lon, gone, "botox", "2026-04-07T10:00:00+01:00")
    ok(lon.put(f"{API}/patients/{gone}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"))
    assert appointment(wst, mn["id"])["status"] == "pending_clearance"

    post(clinical, f"/patients/{gone}/merge/", {"into": survivor}, 200)
    moved = appointment(wst, mn["id"])
    assert moved["patient"] == survivor
    assert moved["status"] == "needs_review"  # 18 days after the survivor's filler: 4 weeks needed
    assert any(r["conflicts_with"] and r["conflicts_with"]["code"] == "filler" for r in moved["review_reasons"])
    assert appointment(lon, pp["id"])["patient"] == survivor
    intake = get(lon, f"/patients/{survivor}/conditions/")
    intake = intake["results"] if isinstance(intake, dict) else intake
    assert [c["condition"] for c in intake] == ["eczema"]
    assert {a["id"] for a in get(clinical, f"/appointments/?patient={survivor}")["results"]} == {mn["id"], pp["id"]}


def test_a_merge_into_itself_or_into_another_organisation_changes_nothing(world):
    clinical = world["clinical"]
    mine = register(world["lon"], world["london"], "Oren", "Blake")
    theirs = register(world["sol"], world["solo"], "Oren", "Blake")
    problem(post(clinical, f"/patients/{mine}/merge/", {"into": mine}), 400)
    problem(post(clinical, f"/patients/{mine}/merge/", {"into": theirs}), 404)
    problem(post(world["sol"], f"/patients/{theirs}/merge/", {"into": mine}), 404)
    assert get(world["lon"], f"/patients/{mine}/")["id"] == mine
    assert get(world["sol"], f"/patients/{theirs}/")["id"] == theirs


# --- The rules hold after booking ------------------------------------------------------------------------------


def test_a_reported_procedure_puts_a_booking_under_review_holds_its_reminders_and_a_move_clears_it(world):
    lon, clinical = world["lon"], world["clinical"]
    endpoint = hook(clinical)
    pid = register(lon, world["london"], "Pia", "Sandoval")
    mn = book(lon, pid, "microneedling", "2026-03-12T10:00:00+00:00")
    assert mn["status"] == "confirmed"
    # a filler done elsewhere on 1 March: microneedling must wait 4 weeks, to 29 March (the day London springs forward)
    post(lon, f"/patients/{pid}/procedures/", {"procedure": "filler", "performed_at": "2026-03-01T12:00:00+00:00"}, 201)
    flagged = appointment(lon, mn["id"])
    assert flagged["status"] == "needs_review"
    [reason] = flagged["review_reasons"]
    assert reason["conflicts_with"]["code"] == "filler" and reason["severity"] == "block"
    assert reason["earliest_allowed"] == "2026-03-29T00:00:00+00:00"
    assert pre_care(flagged) and all(status != "pending" for status in pre_care(flagged)), flagged["reminders"]
    assert "appointment.needs_review" in events(clinical, endpoint, mn["id"])
    listed = get(lon, f"/appointments/?patient={pid}&status=needs_review")["results"]
    assert [a["id"] for a in listed] == [mn["id"]]

    # Saturday 28 March 17:00 is still too soon; Monday 30 March 10:00 BST is fine
    assert check(lon, pid, "microneedling", "2026-03-28T17:00:00+00:00")["earliest_eligible_start"] == (
        "2026-03-29T00:00:00+00:00"
    )
    moved = ok(
        lon.post(f"{API}/appointments/{mn['id']}/reschedule/", {"start": "2026-03-30T10:00:00+01:00"}, format="json"),
        201,
    )
    assert (moved["status"], moved["start"], moved["review_reasons"]) == ("confirmed", "2026-03-30T10:00:00+01:00", [])
    assert moved["rulebook_version"]  # a move is a booking answer too


def test_an_absolute_contraindication_in_the_intake_flags_and_its_correction_releases(world):
    lon, clinical = world["lon"], world["clinical"]
    endpoint = hook(clinical)
    pid = register(lon, world["london"], "Quinn", "Adeyemi")
    mn = book(lon, pid, "microneedling", "2026-03-17T10:00:00+00:00")
    intake = [{"condition": "cardiac_abnormality", "status": "history"}]
    ok(world["wst"].put(f"{API}/patients/{pid}/conditions/", intake, format="json"))  # recorded at the sister site
    flagged = appointment(lon, mn["id"])
    assert flagged["status"] == "needs_review"
    [reason] = flagged["review_reasons"]
    assert (reason["kind"], reason["severity"], reason["earliest_allowed"]) == ("contraindication", "absolute", None)
    assert pre_care(flagged) and all(status != "pending" for status in pre_care(flagged)), flagged["reminders"]

    ok(lon.put(f"{API}/patients/{pid}/conditions/", [], format="json"))  # entered on the wrong record: corrected
    released = appointment(lon, mn["id"])
    assert (released["status"], released["review_reasons"]) == ("confirmed", [])
    assert pre_care(released) and all(status == "pending" for status in pre_care(released)), released["reminders"]
    seen = events(clinical, endpoint, mn["id"])
    assert seen.index("appointment.needs_review") < seen.index("appointment.released"), seen


def test_a_relative_contraindication_after_booking_goes_back_to_clearance_unless_already_cleared(world):
    lon, clinical = world["lon"], world["clinical"]
    endpoint = hook(clinical)
    pid = register(lon, world["london"], "Rhea", "Castellanos")
    mn = book(lon, pid, "microneedling", "2026-03-18T10:00:00+00:00")
    before = len(events(clinical, endpoint, mn["id"]))
    ok(lon.put(f"{API}/patients/{pid}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"))
    assert appointment(lon, mn["id"])["status"] == "pending_clearance"
    assert len(events(clinical, endpoint, mn["id"])) > before  # sent as a webhook
    ok(clinical.post(f"{API}/appointments/{mn['id']}/clear/", {"reason": "dermatologist approved"}, format="json"))
    assert appointment(lon, mn["id"])["status"] == "confirmed"

    # the intake saved again with the same eczema (and something unrelated to microneedling): still cleared
    lines = [{"condition": "eczema", "status": "history"}, {"condition": "filler_allergy", "status": "history"}]
    ok(lon.put(f"{API}/patients/{pid}/conditions/", lines, format="json"))
    assert appointment(lon, mn["id"])["status"] == "confirmed"
    # a new relative one (diabetes) was never cleared: back to clearance
    ok(
        lon.put(
            f"{API}/patients/{pid}/conditions/", [*lines, {"condition": "diabetes", "status": "active"}], format="json"
        )
    )
    assert appointment(lon, mn["id"])["status"] == "pending_clearance"


def test_a_correction_that_leaves_a_relative_contraindication_goes_back_to_clearance_not_confirmed(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Sage", "Morrow")
    ok(lon.put(f"{API}/patients/{pid}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"))
    mn = book(lon, pid, "microneedling", "2026-03-19T10:00:00+00:00")
    assert mn["status"] == "pending_clearance"
    both = [{"condition": "eczema", "status": "history"}, {"condition": "open_wound", "status": "active"}]
    ok(lon.put(f"{API}/patients/{pid}/conditions/", both, format="json"))
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    ok(lon.put(f"{API}/patients/{pid}/conditions/", both[:1], format="json"))  # the wound has healed
    released = appointment(lon, mn["id"])
    assert (released["status"], released["review_reasons"]) == ("pending_clearance", [])


def test_correcting_a_course_end_releases_a_booking_on_the_exact_six_month_day(world):
    lon, clinical = world["lon"], world["clinical"]
    endpoint = hook(clinical)
    pid = register(lon, world["london"], "Tam", "Oakes")
    mn = book(lon, pid, "microneedling", "2026-09-01T09:00:00+01:00")
    course = post(lon, f"/patients/{pid}/medications/", {"drug": "isotretinoin", "started_on": "2025-10-01"}, 201)
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    path = f"{API}/patients/{pid}/medications/{course['id']}/"
    ok(lon.patch(path, {"ended_on": "2026-03-02"}, format="json"))  # 6 months: 2 September
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    ok(lon.patch(path, {"ended_on": "2026-03-01"}, format="json"))  # corrected: 1 September, the booked day
    assert appointment(lon, mn["id"])["status"] == "confirmed"
    assert events(clinical, endpoint, mn["id"])[-1] == "appointment.released"


def test_an_isotretinoin_course_flags_a_booking_and_its_end_date_gives_six_calendar_months(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Sven", "Halvorsen")
    mn = book(lon, pid, "microneedling", "2026-03-10T10:00:00+00:00")
    course = post(lon, f"/patients/{pid}/medications/", {"drug": "isotretinoin", "started_on": "2025-11-01"}, 201)
    flagged = appointment(lon, mn["id"])
    assert flagged["status"] == "needs_review"
    assert [r["earliest_allowed"] for r in flagged["review_reasons"]] == [None]  # ongoing: no date can be given

    ok(lon.patch(f"{API}/patients/{pid}/medications/{course['id']}/", {"ended_on": "2026-03-01"}, format="json"))
    still = appointment(lon, mn["id"])
    assert still["status"] == "needs_review"
    assert [r["earliest_allowed"] for r in still["review_reasons"]] == ["2026-09-01T00:00:00+01:00"]

    # one evening too early is refused with that local day; the first morning books, with the 12-month warning
    too_soon = problem(
        lon.post(f"{API}/appointments/{mn['id']}/reschedule/", {"start": "2026-08-31T17:00:00+01:00"}, format="json"),
        409,
    )
    assert too_soon["earliest_eligible_start"] == "2026-09-01T00:00:00+01:00"
    assert too_soon["next_available_slot"]["start"] == "2026-09-01T09:00:00+01:00"
    assert too_soon["rulebook_version"]
    moved = ok(
        lon.post(f"{API}/appointments/{mn['id']}/reschedule/", {"start": "2026-09-01T09:00:00+01:00"}, format="json"),
        201,
    )
    assert moved["status"] == "confirmed"
    assert [(w["kind"], w["severity"]) for w in moved["warnings"]] == [("interval", "warn")]


@pytest.mark.parametrize(
    "ended_on, too_soon, earliest, slot",
    [
        ("2026-08-31", "2027-02-27T17:00:00+00:00", "2027-02-28T00:00:00+00:00", "2027-03-01T09:00:00+00:00"),
        ("2027-08-31", "2028-02-28T17:00:00+00:00", "2028-02-29T00:00:00+00:00", "2028-02-29T09:00:00+00:00"),
    ],
    ids=["31-aug-to-28-feb", "leap-day"],
)
def test_six_months_after_the_31st_of_august_is_the_last_day_of_february(world, ended_on, too_soon, earliest, slot):
    lon = world["lon"]
    pid = register(lon, world["london"], "Tove", "Lindgren")
    course = {"drug": "isotretinoin", "started_on": "2026-02-01", "ended_on": ended_on}
    post(lon, f"/patients/{pid}/medications/", course, 201)
    answer = check(lon, pid, "microneedling", too_soon)
    assert (answer["eligible"], answer["status"]) == (False, "refused")
    assert answer["earliest_eligible_start"] == earliest
    assert answer["next_available_slot"]["start"] == slot
    fine = check(lon, pid, "microneedling", slot)
    assert (fine["eligible"], fine["status"]) == (True, "confirmed")
    assert [w["severity"] for w in fine["warnings"]] == ["warn"]  # 000's 12 months still warn


def test_a_booking_under_review_still_counts_and_leaves_only_by_a_move_a_cancellation_or_a_correction(world):
    lon, clinical = world["lon"], world["clinical"]
    pid = register(lon, world["london"], "Lio", "Brennan")
    mn = book(lon, pid, "microneedling", "2026-03-12T10:00:00+00:00")
    post(lon, f"/patients/{pid}/procedures/", {"procedure": "filler", "performed_at": "2026-03-01T12:00:00+00:00"}, 201)
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    # it still holds its place in the rules: a Botox 8 days after it is refused, naming it
    refusal = book(lon, pid, "botox", "2026-03-20T10:00:00+00:00", status=409)
    assert mn["id"] in [v["conflicts_with"]["id"] for v in refusal["violations"] if v["conflicts_with"]]
    # a clearance is not a way out
    problem(clinical.post(f"{API}/appointments/{mn['id']}/clear/", {"reason": "fine"}, format="json"), 409)
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    # a move to a day still too soon is refused and changes nothing
    move = lon.post(f"{API}/appointments/{mn['id']}/reschedule/", {"start": "2026-03-26T10:00:00+00:00"}, format="json")
    assert problem(move, 409)["earliest_eligible_start"] == "2026-03-29T00:00:00+00:00"
    still = appointment(lon, mn["id"])
    assert (still["status"], still["start"]) == ("needs_review", "2026-03-12T10:00:00+00:00")
    # nor can it be completed once it has started
    with time_machine.travel("2026-03-12T10:30:00+00:00", tick=False):
        problem(clinical.post(f"{API}/appointments/{mn['id']}/complete/", {}, format="json"), 409)
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    # cancelling it frees the Botox date
    ok(lon.post(f"{API}/appointments/{mn['id']}/cancel/", {"reason": "rebooking"}, format="json"))
    assert appointment(lon, mn["id"])["status"] == "cancelled"
    assert book(lon, pid, "botox", "2026-03-20T10:00:00+00:00")["status"] == "confirmed"


def test_a_change_made_at_one_site_flags_the_sister_sites_booking_and_leaves_cancelled_ones_alone(world):
    lon, wst, clinical = world["lon"], world["wst"], world["clinical"]
    endpoint = hook(clinical)
    pid = register(lon, world["london"], "Mira", "Castell")
    there = book(wst, pid, "microneedling", "2026-03-12T10:00:00+00:00", practitioner=str(world["dr_west"].pk))
    gone = book(wst, pid, "microneedling", "2026-03-05T10:00:00+00:00", practitioner=str(world["dr_west"].pk))
    ok(wst.post(f"{API}/appointments/{gone['id']}/cancel/", {}, format="json"))
    post(lon, f"/patients/{pid}/procedures/", {"procedure": "botox", "performed_at": "2026-03-02T08:00:00+00:00"}, 201)
    assert appointment(wst, there["id"])["status"] == "needs_review"
    assert appointment(wst, gone["id"])["status"] == "cancelled"
    assert appointment(wst, gone["id"])["review_reasons"] == []
    assert "appointment.needs_review" in events(clinical, endpoint, there["id"])
    assert "appointment.needs_review" not in events(clinical, endpoint, gone["id"])
    problem(lon.get(f"{API}/appointments/{there['id']}/"), 404)


def test_calendar_gaps_across_the_autumn_clock_change_in_both_directions(world):
    lon = world["lon"]
    ahead = register(lon, world["london"], "Noel", "Harrow")
    book(lon, ahead, "microneedling", "2026-11-02T17:00:00+00:00")  # Monday, GMT again
    # Botox must be 2 weeks before it (by 19 October), or 3 weeks after it (from 23 November)
    refused = check(lon, ahead, "botox", "2026-10-20T09:00:00+01:00")
    assert (refused["eligible"], refused["earliest_eligible_start"]) == (False, "2026-11-23T00:00:00+00:00")
    assert check(lon, ahead, "botox", "2026-10-19T17:00:00+01:00")["eligible"] is True
    behind = register(lon, world["london"], "Nell", "Harrow")
    book(lon, behind, "botox", "2026-10-20T17:00:00+01:00")  # Tuesday, BST
    after = check(lon, behind, "microneedling", "2026-11-02T17:59:00+00:00")
    assert (after["eligible"], after["earliest_eligible_start"]) == (False, "2026-11-03T00:00:00+00:00")
    assert check(lon, behind, "microneedling", "2026-11-03T09:00:00+00:00")["eligible"] is True


# --- Organisation rule books, versioned ------------------------------------------------------------------------


def test_tightening_a_rule_flags_this_organisations_booking_only_and_moves_its_version(
    world, django_capture_on_commit_callbacks
):
    lon, sol, clinical = world["lon"], world["sol"], world["clinical"]
    endpoint = hook(clinical)
    mine = register(lon, world["london"], "Uma", "Rasmussen")
    theirs = register(sol, world["solo"], "Uma", "Rasmussen")
    for client, pid in ((lon, mine), (sol, theirs)):
        post(client, f"/patients/{pid}/procedures/", {"procedure": "botox", "performed_at": "2026-03-01T10:00Z"}, 201)
    mn_mine = book(lon, mine, "microneedling", "2026-03-20T10:00:00+00:00")
    mn_theirs = book(sol, theirs, "microneedling", "2026-03-20T10:00:00+00:00")
    version_mine, version_theirs = mn_mine["rulebook_version"], mn_theirs["rulebook_version"]
    assert version_mine and version_theirs
    assert check(lon, mine, "botox", "2026-04-20T10:00:00+01:00")["rulebook_version"] == version_mine

    rule = override(world["chain"], "botox-then-microneedling", gap_value=4, gap_unit="weeks")
    org_rule_save(rule, "Chain protocol: 4 weeks after Botox", django_capture_on_commit_callbacks)

    flagged = appointment(lon, mn_mine["id"])
    assert flagged["status"] == "needs_review"
    assert flagged["review_reasons"][0]["earliest_allowed"] == "2026-03-29T00:00:00+00:00"
    assert "appointment.needs_review" in events(clinical, endpoint, mn_mine["id"])
    assert appointment(sol, mn_theirs["id"])["status"] == "confirmed"
    new_version = check(lon, mine, "botox", "2026-04-20T10:00:00+01:00")["rulebook_version"]
    assert new_version != version_mine
    assert check(sol, theirs, "botox", "2026-04-20T10:00:00+01:00")["rulebook_version"] == version_theirs
    refusal = book(lon, mine, "microneedling", "2026-03-27T10:00:00+00:00", status=409)
    assert refusal["rulebook_version"] == new_version


def test_reverting_the_tightened_rule_releases_the_booking_and_says_so_by_webhook(
    world, django_capture_on_commit_callbacks
):
    lon, clinical = world["lon"], world["clinical"]
    endpoint = hook(clinical)
    pid = register(lon, world["london"], "Vera", "Nakamura")
    post(lon, f"/patients/{pid}/procedures/", {"procedure": "botox", "performed_at": "2026-03-01T10:00Z"}, 201)
    mn = book(lon, pid, "microneedling", "2026-03-20T10:00:00+00:00")
    rule = override(world["chain"], "botox-then-microneedling", gap_value=4, gap_unit="weeks")
    org_rule_save(rule, "Chain protocol: 4 weeks", django_capture_on_commit_callbacks)
    assert appointment(lon, mn["id"])["status"] == "needs_review"
    with django_capture_on_commit_callbacks(execute=True):
        rulebooks.rule_delete(rule=rule, user=None, reason="Back to the sourced 2 weeks", now=CLOCK)
    assert appointment(lon, mn["id"])["status"] == "confirmed"
    seen = events(clinical, endpoint, mn["id"])
    assert seen[-1] == "appointment.released", seen


def test_a_relaxed_isotretinoin_wait_applies_to_its_organisation_only(world, django_capture_on_commit_callbacks):
    lon, sol = world["lon"], world["sol"]
    mine = register(lon, world["london"], "Wren", "Abernathy")
    theirs = register(sol, world["solo"], "Wren", "Abernathy")
    course = {"drug": "isotretinoin", "started_on": "2025-06-01", "ended_on": "2026-01-15"}
    for client, pid in ((lon, mine), (sol, theirs)):
        post(client, f"/patients/{pid}/medications/", course, 201)
    before = check(lon, mine, "microneedling", "2026-04-15T10:00:00+01:00")
    assert before["eligible"] is False
    rule = override(world["chain"], "isotretinoin-then-microneedling-block", gap_value=3, gap_unit="months")
    org_rule_save(rule, "ASDS 2017 consensus: 3 months is enough here", django_capture_on_commit_callbacks)

    after = check(lon, mine, "microneedling", "2026-04-15T10:00:00+01:00")
    assert (after["eligible"], after["status"]) == (True, "confirmed")
    assert after["rulebook_version"] != before["rulebook_version"]
    assert check(lon, mine, "microneedling", "2026-04-14T17:00:00+01:00")["earliest_eligible_start"] == (
        "2026-04-15T00:00:00+01:00"
    )
    elsewhere = check(sol, theirs, "microneedling", "2026-04-15T10:00:00+01:00")
    assert elsewhere["eligible"] is False
    assert elsewhere["earliest_eligible_start"] == "2026-07-15T00:00:00+01:00"


def test_a_disabled_block_leaves_the_warning_and_another_organisation_still_refused(
    world, django_capture_on_commit_callbacks
):
    lon, sol = world["lon"], world["sol"]
    mine = register(lon, world["london"], "Xena", "Oduya")
    theirs = register(sol, world["solo"], "Xena", "Oduya")
    for client, pid in ((lon, mine), (sol, theirs)):
        book(client, pid, "microneedling", "2026-03-10T10:00:00+00:00")
    assert book(lon, mine, "plasma_pen", "2026-03-13T10:00:00+00:00", status=409)["violations"]
    rule = override(world["chain"], "microneedling-then-plasma-pen-block", is_active=False)
    org_rule_save(rule, "Chain follows the 10-day warning only", django_capture_on_commit_callbacks)
    booked = book(lon, mine, "plasma_pen", "2026-03-13T10:00:00+00:00")
    assert booked["status"] == "confirmed"
    assert [(w["kind"], w["severity"]) for w in booked["warnings"]] == [("interval", "warn")]
    assert book(sol, theirs, "plasma_pen", "2026-03-13T10:00:00+00:00", status=409)["earliest_eligible_start"] == (
        "2026-03-17T00:00:00+00:00"
    )


def test_an_added_relative_contraindication_sends_a_confirmed_booking_back_to_clearance_here_only(
    world, django_capture_on_commit_callbacks
):
    lon, sol, clinical = world["lon"], world["sol"], world["clinical"]
    endpoint = hook(clinical)
    mine = register(lon, world["london"], "Ola", "Westergaard")
    theirs = register(sol, world["solo"], "Ola", "Westergaard")
    booked = {}
    for client, pid in ((lon, mine), (sol, theirs)):
        ok(
            client.put(
                f"{API}/patients/{pid}/conditions/", [{"condition": "diabetes", "status": "active"}], format="json"
            )
        )
        booked[pid] = book(client, pid, "botox", "2026-03-17T10:00:00+00:00")
        assert booked[pid]["status"] == "confirmed"
    rule = ContraindicationRule(
        organisation=world["chain"],
        condition_id="diabetes",
        procedure_id="botox",
        severity="relative",
        source="Chain protocol (QA)",
    )
    org_rule_save(rule, "Chain: clinician sign-off for Botox with diabetes", django_capture_on_commit_callbacks)
    assert appointment(lon, booked[mine]["id"])["status"] == "pending_clearance"
    assert len(events(clinical, endpoint, booked[mine]["id"])) >= 2  # created, then the move back is sent
    assert appointment(sol, booked[theirs]["id"])["status"] == "confirmed"
    answer = check(lon, mine, "botox", "2026-03-24T10:00:00+00:00")
    assert (answer["eligible"], answer["status"]) == (True, "pending_clearance")


def test_a_cleared_booking_stays_cleared_when_the_rule_is_reworded_and_is_flagged_when_it_turns_absolute(
    world, django_capture_on_commit_callbacks
):
    from scheduler.models import ContraindicationRule as Rule

    lon, clinical = world["lon"], world["clinical"]
    pid = register(lon, world["london"], "Quill", "Adair")
    ok(lon.put(f"{API}/patients/{pid}/conditions/", [{"condition": "eczema", "status": "history"}], format="json"))
    mn = book(lon, pid, "microneedling", "2026-03-19T10:00:00+00:00")
    assert mn["status"] == "pending_clearance"
    ok(clinical.post(f"{API}/appointments/{mn['id']}/clear/", {"reason": "patch test fine"}, format="json"))
    assert appointment(lon, mn["id"])["status"] == "confirmed"

    default = Rule.objects.get(default_key="microneedling-eczema", organisation__isnull=True)
    reworded = Rule(
        organisation=world["chain"],
        replaces=default,
        condition_id="eczema",
        procedure_id="microneedling",
        severity="relative",
        applies_to=default.applies_to,
        source="Chain wording (QA)",
    )
    org_rule_save(reworded, "Chain: our own wording", django_capture_on_commit_callbacks)
    assert appointment(lon, mn["id"])["status"] == "confirmed"  # cleared for that same rule already

    reworded.severity = "absolute"
    org_rule_save(reworded, "Chain: no microneedling with eczema at all", django_capture_on_commit_callbacks)
    flagged = appointment(lon, mn["id"])
    assert flagged["status"] == "needs_review"
    assert [(r["kind"], r["severity"]) for r in flagged["review_reasons"]] == [("contraindication", "absolute")]


def test_a_rule_change_rechecks_future_bookings_only(world, django_capture_on_commit_callbacks):
    lon = world["lon"]
    pid = register(lon, world["london"], "Uli", "Brandt")
    ok(lon.put(f"{API}/patients/{pid}/conditions/", [{"condition": "diabetes", "status": "active"}], format="json"))
    past = book(lon, pid, "botox", "2026-03-03T10:00:00+00:00")
    future = book(lon, pid, "filler", "2026-03-10T10:00:00+00:00")
    rule = ContraindicationRule(
        organisation=world["chain"],
        condition_id="diabetes",
        procedure_id="botox",
        severity="absolute",
        source="Chain protocol (QA)",
    )
    later = ContraindicationRule(
        organisation=world["chain"],
        condition_id="diabetes",
        procedure_id="filler",
        severity="absolute",
        source="Chain protocol (QA)",
    )
    with time_machine.travel("2026-03-05T09:00:00+00:00", tick=False):
        org_rule_save(rule, "Chain: no Botox with diabetes", django_capture_on_commit_callbacks)
        org_rule_save(later, "Chain: no filler with diabetes", django_capture_on_commit_callbacks)
        assert appointment(lon, past["id"])["status"] == "confirmed"  # already happened: not re-judged
        assert appointment(lon, future["id"])["status"] == "needs_review"


def test_a_relaxation_without_a_reason_is_refused_and_the_version_stays(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Yara", "Petrov")
    version = check(lon, pid, "botox", "2026-03-10T10:00:00+00:00")["rulebook_version"]
    rule = override(world["chain"], "botox-then-microneedling", gap_value=1, gap_unit="weeks")
    with pytest.raises(ValidationError):
        rulebooks.rule_save(rule=rule, user=None, reason="  ", now=CLOCK)
    assert check(lon, pid, "botox", "2026-03-10T10:00:00+00:00")["rulebook_version"] == version


def test_an_added_hours_rule_is_elapsed_time_across_the_spring_change(world, django_capture_on_commit_callbacks):
    lon = world["lon"]
    pid = register(lon, world["london"], "Zoe", "Marchetti")
    rule = IntervalRule(
        organisation=world["chain"],
        earlier_procedure_id="botox",
        later_procedure_id="filler",
        gap_value=48,
        gap_unit="hours",
        severity="block",
        source="Chain protocol (QA)",
    )
    org_rule_save(rule, "Chain: 48 h between Botox and filler", django_capture_on_commit_callbacks)
    book(lon, pid, "botox", "2026-03-28T10:00:00+00:00")  # Saturday, GMT
    # 48 h later is Monday 10:00 UTC = 11:00 BST, not 10:00 local
    refused = check(lon, pid, "filler", "2026-03-30T10:30:00+01:00")
    assert refused["eligible"] is False
    assert refused["earliest_eligible_start"] == "2026-03-30T11:00:00+01:00"
    assert check(lon, pid, "filler", "2026-03-30T11:00:00+01:00")["eligible"] is True
    # and looking forward: a Botox booked under 48 h before a booked filler is refused
    book(lon, pid, "filler", "2026-03-30T11:00:00+01:00")
    assert check(lon, pid, "botox", "2026-03-28T11:30:00+00:00")["eligible"] is False


# --- Repeats of the same procedure (clinic-practice warnings) -------------------------------------------------


@pytest.mark.parametrize(
    "procedure, too_soon, exactly",
    [
        ("botox", "2026-05-25T10:00:00+01:00", "2026-05-26T10:00:00+01:00"),  # 12 weeks
        ("filler", "2026-03-16T10:00:00+00:00", "2026-03-17T10:00:00+00:00"),  # 2 weeks
        ("microneedling", "2026-03-30T10:00:00+01:00", "2026-03-31T10:00:00+01:00"),  # 4 weeks
        ("plasma_pen", "2026-04-13T10:00:00+01:00", "2026-04-14T10:00:00+01:00"),  # 6 weeks
    ],
)
def test_a_repeat_too_soon_warns_both_ways_and_never_refuses(world, procedure, too_soon, exactly):
    lon = world["lon"]
    pid = register(lon, world["london"], "Abel", "Sorensen")
    first = book(lon, pid, procedure, "2026-03-03T10:00:00+00:00")
    at_gap = check(lon, pid, procedure, exactly)
    assert (at_gap["eligible"], at_gap["status"], at_gap["warnings"]) == (True, "confirmed", [])
    second = book(lon, pid, procedure, too_soon)
    assert second["status"] == "confirmed"
    [warning] = second["warnings"]
    assert (warning["kind"], warning["severity"]) == ("interval", "warn")
    assert warning["conflicts_with"]["id"] == first["id"]
    assert "[00" not in (warning.get("source") or ""), warning  # clinic practice, never shown as sourced
    # looking forward: with the first cancelled, one booked on its day is too close before the second
    ok(lon.post(f"{API}/appointments/{first['id']}/cancel/", {}, format="json"))
    ahead = check(lon, pid, procedure, "2026-03-03T11:00:00+00:00")
    assert ahead["eligible"] is True
    assert [w["conflicts_with"]["id"] for w in ahead["warnings"]] == [second["id"]]


# --- Treatment plans -------------------------------------------------------------------------------------------


def test_plan_templates_are_the_briefs_courses(world):
    rows = get(world["lon"], "/plan-templates/")["results"]
    by_procedure = {(r["procedure"], r["sessions"]): r for r in rows}
    gaps = {k: (r["min_gap"], r["ideal_gap"], r["max_gap"]) for k, r in by_procedure.items()}
    assert gaps[("microneedling", 3)] == (
        {"value": 4, "unit": "weeks"},
        {"value": 4, "unit": "weeks"},
        {"value": 6, "unit": "weeks"},
    )
    assert gaps[("plasma_pen", 2)] == (
        {"value": 6, "unit": "weeks"},
        {"value": 8, "unit": "weeks"},
        {"value": 8, "unit": "weeks"},
    )
    botox = [r for r in rows if r["procedure"] == "botox"]
    assert len(botox) == 1
    assert (botox[0]["min_gap"], botox[0]["ideal_gap"], botox[0]["max_gap"]) == (
        {"value": 3, "unit": "months"},
        {"value": 14, "unit": "weeks"},
        {"value": 4, "unit": "months"},
    )
    assert all({"code", "name"} <= set(r) for r in rows)


def template_code(client, procedure) -> str:
    [row] = [r for r in get(client, "/plan-templates/")["results"] if r["procedure"] == procedure]
    return row["code"]


def test_a_plan_dry_run_places_sessions_at_the_ideal_gap_across_the_clock_change_and_books_nothing(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Bea", "Lachance")
    code = template_code(lon, "microneedling")
    body = {"template": code, "start_from": "2026-03-16", "clinic": str(world["london"].pk), "dry_run": True}
    proposal = post(lon, f"/patients/{pid}/plans/", body, 200)
    assert proposal["feasible"] is True
    sessions = proposal["sessions"]
    assert [s["index"] for s in sessions] == [1, 2, 3]
    assert [s["start"] for s in sessions] == [
        "2026-03-16T09:00:00+00:00",
        "2026-04-13T09:00:00+01:00",
        "2026-05-11T09:00:00+01:00",
    ]
    for s in sessions:
        assert s["window"]["earliest"][:10] <= s["start"][:10] <= s["window"]["latest"][:10]
        assert s["window"]["ideal"][:10] == s["start"][:10]
        assert s["warnings"] == []
    assert (sessions[1]["window"]["earliest"][:10], sessions[1]["window"]["latest"][:10]) == (
        "2026-04-13",
        "2026-04-27",
    )
    assert get(lon, f"/appointments/?patient={pid}")["count"] == 0


@pytest.mark.parametrize(
    "start_from, first, window2, first_offset, second_offset",
    [
        ("2026-08-31", "2026-08-31", ("2026-11-30", "2026-12-07", "2026-12-31"), "+01:00", "+00:00"),
        ("2027-11-30", "2027-11-30", ("2028-02-29", "2028-03-07", "2028-03-30"), "+00:00", "+00:00"),
    ],
    ids=["31-august", "leap-day"],
)
def test_botox_maintenance_windows_use_calendar_months_from_month_ends(
    world, start_from, first, window2, first_offset, second_offset
):
    lon = world["lon"]
    pid = register(lon, world["london"], "Ada", "Vance")
    body = {"template": template_code(lon, "botox"), "start_from": start_from, "sessions": 2, "dry_run": True}
    proposal = post(lon, f"/patients/{pid}/plans/", body, 200)
    assert proposal["feasible"] is True, proposal
    one, two = proposal["sessions"]
    assert one["start"] == f"{first}T09:00:00{first_offset}"
    window = two["window"]
    assert (window["earliest"][:10], window["ideal"][:10], window["latest"][:10]) == window2
    assert two["start"] == f"{window2[1]}T09:00:00{second_offset}"


def test_a_plan_starting_today_never_places_a_session_in_the_past(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Bo", "Ekdahl")
    body = {"template": template_code(lon, "microneedling"), "start_from": "2026-03-02", "dry_run": True}
    with time_machine.travel("2026-03-02T11:20:00+00:00", tick=False):
        proposal = post(lon, f"/patients/{pid}/plans/", body, 200)
        first = proposal["sessions"][0]["start"]
        assert first[:10] == "2026-03-02" and first > "2026-03-02T11:20:00+00:00", first
        booked = post(lon, f"/patients/{pid}/plans/", {**body, "dry_run": False}, 201)
        assert appointment(lon, booked["sessions"][0]["appointment"])["start"] == first


def test_a_plan_fits_around_a_booking_at_the_sister_site_and_books_every_session(world):
    lon, wst = world["lon"], world["wst"]
    pid = register(lon, world["london"], "Cato", "Ferreira")
    botox = book(wst, pid, "botox", "2026-03-30T10:00:00+01:00", practitioner=str(world["dr_west"].pk))
    code = template_code(lon, "microneedling")
    body = {"template": code, "start_from": "2026-03-03", "clinic": str(world["london"].pk)}
    proposal = post(lon, f"/patients/{pid}/plans/", {**body, "dry_run": True}, 200)
    days = [s["start"][:10] for s in proposal["sessions"]]
    # session 2's ideal (31 March) is under 2 weeks after the Botox: the first day allowed is 13 April
    assert days == ["2026-03-03", "2026-04-13", "2026-05-11"], proposal
    for start in [s["start"] for s in proposal["sessions"]]:
        assert check(lon, pid, "microneedling", start)["eligible"] is True

    plan = post(lon, f"/patients/{pid}/plans/", body, 201)
    assert plan["patient"] == pid and len(plan["sessions"]) == 3
    ids = [s["appointment"] for s in plan["sessions"]]
    assert all(ids)
    starts = [appointment(lon, i)["start"][:10] for i in ids]
    assert starts == days
    assert {appointment(lon, i)["status"] for i in ids} == {"confirmed"}
    assert appointment(wst, botox["id"])["status"] == "confirmed"
    assert [s["status"] for s in get(lon, f"/plans/{plan['id']}/")["sessions"]] == ["booked"] * 3


def test_a_plan_keeps_every_session_clear_of_an_organisations_added_repeat_block(
    world, django_capture_on_commit_callbacks
):
    lon = world["lon"]
    rule = IntervalRule(
        organisation=world["chain"],
        earlier_procedure_id="microneedling",
        later_procedure_id="microneedling",
        gap_value=5,
        gap_unit="weeks",
        severity="block",
        source="Chain protocol (QA)",
    )
    org_rule_save(rule, "Chain: 5 weeks between microneedling sessions", django_capture_on_commit_callbacks)
    pid = register(lon, world["london"], "Vito", "Marr")
    body = {"template": template_code(lon, "microneedling"), "start_from": "2026-03-16", "dry_run": True}
    proposal = post(lon, f"/patients/{pid}/plans/", body, 200)
    assert proposal["feasible"] is True
    # the ideal 4 weeks is refused between the plan's own sessions: 5 weeks, still inside the 6-week window
    assert [s["start"][:10] for s in proposal["sessions"]] == ["2026-03-16", "2026-04-20", "2026-05-25"]


def test_a_plan_whose_proposed_slot_was_taken_since_is_refused_whole(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Wynn", "Ashby")
    body = {"template": template_code(lon, "plasma_pen"), "start_from": "2026-03-04", "clinic": str(world["london"].pk)}
    proposal = post(lon, f"/patients/{pid}/plans/", {**body, "dry_run": True}, 200)
    chosen = [{"start": s["start"], "practitioner": s["practitioner"]} for s in proposal["sessions"]]
    someone = register(lon, world["london"], "Yves", "Carrow")
    book(lon, someone, "botox", chosen[1]["start"])  # takes session 2's slot (Dr London is the only one)
    refusal = problem(post(lon, f"/patients/{pid}/plans/", {**body, "proposal": chosen}), 409)
    assert refusal.get("session") == 2, refusal
    assert refusal["violations"] and refusal["violations"][0]["kind"] == "availability"
    assert get(lon, f"/appointments/?patient={pid}")["count"] == 0  # session 1 was not kept either


def test_a_plan_that_cannot_be_placed_books_nothing_and_says_why(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Dara", "Quinlan")
    post(lon, f"/patients/{pid}/medications/", {"drug": "isotretinoin", "started_on": "2026-01-10"}, 201)
    code = template_code(lon, "microneedling")
    body = {"template": code, "start_from": "2026-03-09", "clinic": str(world["london"].pk)}
    proposal = post(lon, f"/patients/{pid}/plans/", {**body, "dry_run": True}, 200)
    assert proposal["feasible"] is False and proposal["reason"]
    refusal = problem(post(lon, f"/patients/{pid}/plans/", body), 409)
    assert refusal["violations"] and refusal["violations"][0]["kind"] == "interval"
    assert refusal.get("rulebook_version")
    assert get(lon, f"/appointments/?patient={pid}")["count"] == 0


def booked_plasma_pen_course(world) -> tuple[APIClient, str, dict]:
    """A plasma pen course (2 sessions, ideal 8 weeks) booked from Wednesday 4 March at London."""
    lon = world["lon"]
    pid = register(lon, world["london"], "Emil", "Strand")
    body = {"template": template_code(lon, "plasma_pen"), "start_from": "2026-03-04", "clinic": str(world["london"].pk)}
    plan = post(lon, f"/patients/{pid}/plans/", body, 201)
    assert appointment(lon, plan["sessions"][1]["appointment"])["start"][:10] == "2026-04-29"  # 8 weeks, the ideal
    return lon, pid, plan


def test_a_cancelled_session_shows_cancelled_and_a_replan_dry_run_changes_nothing_until_applied(world):
    lon, pid, plan = booked_plasma_pen_course(world)
    first, second = plan["sessions"]
    ok(lon.post(f"{API}/appointments/{second['appointment']}/cancel/", {"reason": "away"}, format="json"))
    shown = get(lon, f"/plans/{plan['id']}/")["sessions"]
    assert [s["status"] for s in shown] == ["booked", "cancelled"]

    replan = {"from_session": 2, "start": "2026-04-20T09:00:00+01:00"}
    proposal = post(lon, f"/plans/{plan['id']}/replan/", {**replan, "dry_run": True}, 200)
    [moved] = proposal["sessions"]
    assert "2026-04-20" <= moved["start"][:10] <= "2026-04-29"  # from `start`, inside 6-8 weeks after 4 March
    assert [s["status"] for s in get(lon, f"/plans/{plan['id']}/")["sessions"]] == ["booked", "cancelled"]
    assert get(lon, f"/appointments/?patient={pid}&status=confirmed")["count"] == 1
    applied = post(lon, f"/plans/{plan['id']}/replan/", replan, 200)
    [_, again] = applied["sessions"]
    assert again["status"] == "booked" and again["appointment"] != second["appointment"]
    assert appointment(lon, again["appointment"])["start"] == moved["start"]


def test_a_replan_keeps_the_ideal_day_for_a_start_before_it_and_goes_from_start_once_the_window_has_passed(world):
    """Domain brief, section 6: a plan places each session inside its window after the previous one, at the ideal
    gap where possible; `start` only says "not before" (docs/plans.md, the schema's `start`)."""
    lon, pid, plan = booked_plasma_pen_course(world)
    early = {"from_session": 2, "start": "2026-04-20T09:00:00+01:00", "dry_run": True}
    assert check(lon, pid, "plasma_pen", "2026-04-20T09:00:00+01:00")["eligible"] is True  # possible, not ideal
    proposal = post(lon, f"/plans/{plan['id']}/replan/", early, 200)
    assert [s["start"] for s in proposal["sessions"]] == ["2026-04-29T09:00:00+01:00"]  # 8 weeks, the ideal
    late = {"from_session": 2, "start": "2026-05-04T09:00:00+01:00", "dry_run": True}
    proposal = post(lon, f"/plans/{plan['id']}/replan/", late, 200)
    assert [s["start"] for s in proposal["sessions"]] == ["2026-05-04T09:00:00+01:00"]  # the window has passed


def test_a_plan_at_the_new_york_site_keeps_its_gap_in_local_dates_across_the_us_clock_change(world):
    org = world["org"]
    pid = register(org, world["london"], "Pax", "Doherty")
    body = {
        "template": template_code(org, "plasma_pen"),
        "start_from": "2026-03-02",
        "clinic": "chain-ny",
        "dry_run": True,
    }
    proposal = post(org, f"/patients/{pid}/plans/", body, 200)
    assert proposal["feasible"] is True
    assert [s["start"] for s in proposal["sessions"]] == ["2026-03-02T09:00:00-05:00", "2026-04-27T09:00:00-04:00"]
    assert {s["practitioner"] for s in proposal["sessions"]} == {str(world["dr_ny"].pk)}


def test_plans_of_another_organisation_are_not_found_and_bad_plan_input_is_a_400(world):
    lon, sol = world["lon"], world["sol"]
    pid = register(lon, world["london"], "Fynn", "Oyelaran")
    code = template_code(lon, "plasma_pen")
    plan = post(lon, f"/patients/{pid}/plans/", {"template": code, "start_from": "2026-03-04"}, 201)
    problem(sol.get(f"{API}/plans/{plan['id']}/"), 404)
    problem(post(sol, f"/patients/{pid}/plans/", {"template": code, "start_from": "2026-03-04"}), 404)
    problem(post(sol, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": "2026-04-20T09:00:00+01:00"}), 404)
    bad = problem(post(lon, f"/patients/{pid}/plans/", {"template": "no-such-course", "start_from": "2026-03-04"}), 400)
    assert "template" in bad["errors"]
    past = problem(post(lon, f"/patients/{pid}/plans/", {"template": code, "start_from": "2026-02-01"}), 400)
    assert "start_from" in past["errors"]
    naive = problem(post(lon, f"/plans/{plan['id']}/replan/", {"from_session": 2, "start": "2026-04-20T09:00:00"}), 400)
    assert "start" in naive["errors"]
    assert get(lon, f"/appointments/?patient={pid}")["count"] == 2  # the one plan's two sessions, nothing more


# --- Recall ----------------------------------------------------------------------------------------------------


def test_a_completed_botox_plans_one_recall_at_the_ideal_date_and_booking_cancels_it(world):
    lon, clinical = world["lon"], world["clinical"]
    pid = register(lon, world["london"], "Gia", "Montoya")
    botox = book(lon, pid, "botox", "2026-03-03T10:00:00+00:00")
    with time_machine.travel(CLOCK + timedelta(days=1, hours=1, minutes=45), tick=False):
        ok(clinical.post(f"{API}/appointments/{botox['id']}/complete/", {}, format="json"))
        recalls = [r for r in appointment(lon, botox["id"])["reminders"] if r["kind"] == "recall"]
        # 14 weeks after 3 March is 9 June, 10:00 London summer time
        assert [(r["due_at"], r["status"]) for r in recalls] == [("2026-06-09T10:00:00+01:00", "pending")]
        book(lon, pid, "botox", "2026-06-10T10:00:00+01:00")
        recalls = [r for r in appointment(lon, botox["id"])["reminders"] if r["kind"] == "recall"]
        assert [r["status"] for r in recalls] == ["cancelled"]
    assert date(2026, 3, 3) + timedelta(weeks=14) == date(2026, 6, 9)


def test_completing_a_plan_session_whose_next_one_is_not_booked_recalls_at_its_ideal_date(world):
    lon, pid, plan = booked_plasma_pen_course(world)
    first, second = plan["sessions"]
    ok(lon.post(f"{API}/appointments/{second['appointment']}/cancel/", {}, format="json"))
    with time_machine.travel("2026-03-04T10:30:00+00:00", tick=False):
        ok(world["clinical"].post(f"{API}/appointments/{first['appointment']}/complete/", {}, format="json"))
        recalls = [r for r in appointment(lon, first["appointment"])["reminders"] if r["kind"] == "recall"]
        assert [(r["due_at"], r["status"]) for r in recalls] == [("2026-04-29T10:00:00+01:00", "pending")]
        book(lon, pid, "plasma_pen", "2026-04-28T10:00:00+01:00")
        recalls = [r for r in appointment(lon, first["appointment"])["reminders"] if r["kind"] == "recall"]
        assert [r["status"] for r in recalls] == ["cancelled"]


def test_a_session_whose_window_has_passed_unbooked_is_missed(world):
    lon, pid, plan = booked_plasma_pen_course(world)
    second = plan["sessions"][1]
    ok(lon.post(f"{API}/appointments/{second['appointment']}/cancel/", {}, format="json"))
    assert get(lon, f"/plans/{plan['id']}/")["sessions"][1]["status"] == "cancelled"
    with time_machine.travel("2026-05-01T09:00:00+00:00", tick=False):  # past 29 April, the window's last day
        assert get(lon, f"/plans/{plan['id']}/")["sessions"][1]["status"] == "missed"


def test_no_recall_goes_to_a_patient_who_chose_no_channel(world):
    lon = world["lon"]
    pid = register(lon, world["london"], "Rafe", "Tolland", reminder_channels=[])
    botox = book(lon, pid, "botox", "2026-03-03T10:00:00+00:00")
    with time_machine.travel("2026-03-03T10:45:00+00:00", tick=False):
        ok(world["clinical"].post(f"{API}/appointments/{botox['id']}/complete/", {}, format="json"))
        detail = appointment(lon, botox["id"])
    assert detail["status"] == "completed"
    assert [r for r in detail["reminders"] if r["kind"] == "recall" and r["status"] == "pending"] == []
