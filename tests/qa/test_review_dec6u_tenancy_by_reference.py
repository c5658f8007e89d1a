"""Review probe dec6u: tenancy by reference over the REST API v1 and FHIR.

Probed: whether anything of another organisation, or of a clinic the caller was not granted, can be read, changed or
even confirmed to exist when its id is put where the API takes references: addresses, request bodies (`patient`,
`practitioner`, `clinic`, a plan's `proposal`, a re-plan's `practitioner`, a merge's `into`), list filters, FHIR search
parameters (GET and POST `_search`), If-Match (with the owner's own, current ETag), Idempotency-Key replays, page
numbers and counts, and parameters an operation does not define (`expand`, `organisation`, `_include`). The yardstick
(docs/api.md "Tenancy", api-contract "anything outside that scope is a 404"): the answer for an id that exists
elsewhere is word for word the answer for an id that never existed (status, code, message, headers named), and costs
the same statements.

Three tenants throughout: London (the caller, a clinical key granted London only), West (a sister site of London's
organisation) and New York (another organisation).

Found right (passing tests): every address, body field and filter tried answers another tenant's id word for word as
an id that never existed (status, code, title, detail, instance, header names), from a platform, a desk session, an
organisation-wide grant and a scope read as a subquery; the owner's current ETag (or `*`) in If-Match opens nothing;
Idempotency-Keys are per caller (no replay of another's 201, no 422 for another's key); another organisation's
tombstone is a plain 404 (no 308 naming its survivor); counts, pages and FHIR totals count the granted clinics alone;
undefined parameters (`expand`, `organisation`, `clinic__organisation`) widen nothing and FHIR refuses `_include`,
`_has`, chains and modifiers; FHIR searches by GET and POST give the never-existed Bundle.

Found (xfail):
* DEFECT: a redelivery of an event at a clinic no longer granted is answered 201 and queued (then dropped unsent);
* QUESTION: a practitioner named in a move, a re-plan or a plan's proposal costs one more statement when it exists
  elsewhere (scheduler.booking._why_not looks it up unscoped): the same answer, measurably later;
* QUESTION: intake-line (and rule) ids in refusals are one sequence for every organisation: their gaps count another
  tenant's writes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from api import access
from clinic.models import (
    ApiClient,
    Appointment,
    MedicationCourse,
    Patient,
    PatientCondition,
    ProcedureRecord,
    StaffRole,
)
from plans.models import TreatmentPlan
from reminders.models import OutboxMessage, WebhookEndpoint
from tests.api.conftest import http, new_api_client, session, staff
from tests.factories import PatientFactory, PractitionerFactory
from tests.qa.helpers import API, api_book, ok, post, problem, register_webhook

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("platform_ready", "ticking_clock")]

# An id no row has ever had (fixed, so a failure reads the same every run), and a clinic code no clinic has.
MISSING = uuid.UUID("00000000-0000-4000-8000-00000000dead")
NO_CODE = "nowhere-zz"
TUESDAY = "2026-03-03T10:00:00+00:00"
THURSDAY = "2026-03-05T10:00:00+00:00"
NY_TUESDAY = "2026-03-03T10:00:00-05:00"
COURSE = "microneedling-course"


@dataclass
class World:
    london: object
    west: object
    ny: object
    dr_london: object
    dr_west: object
    dr_ny: object
    pat: object  # London's patient (organisation A)
    wendy: object  # a patient of organisation A whose home is West
    bea: object  # organisation B's patient
    lon: object  # London's platform: clinical, granted London only
    lon_client: object
    wst: object  # West's platform
    nyc: object  # New York's platform
    lon2: object  # a second platform of London's
    mine: str  # London's booking for Pat
    at_west: str  # West's booking for Wendy
    at_ny: str  # New York's booking for Bea
    plan: str  # London's course for Pat
    west_plan: str
    ny_plan: str
    bea_course: str
    hooks: dict
    deliveries: dict


@pytest.fixture
def w(clinic, west, other_clinic, practitioner, other_practitioner, patient, other_patient) -> World:
    dr_west = PractitionerFactory(clinic=west, name="Dr West")
    wendy = PatientFactory(clinic=west, first_name="Wendy", last_name="West")
    lon_client, lon_key = new_api_client(clinic, name="qa-u-london", clinical=True)
    lon = http(lon_key)
    wst = http(new_api_client(west, name="qa-u-west", clinical=True)[1])
    nyc = http(new_api_client(other_clinic, name="qa-u-ny", clinical=True)[1])
    lon2 = http(new_api_client(clinic, name="qa-u-london-2")[1])
    hooks = {
        name: register_webhook(client, f"https://{name}.example.com/in")["id"]
        for name, client in (("lon", lon), ("lon2", lon2), ("nyc", nyc))
    }
    mine = api_book(lon, patient, TUESDAY)["id"]
    at_west = api_book(wst, wendy, TUESDAY)["id"]
    at_ny = api_book(nyc, other_patient, NY_TUESDAY)["id"]
    course = {"template": COURSE, "start_from": "2026-03-09"}
    plan = ok(post(lon, f"/patients/{patient.pk}/plans/", course), 201)["id"]
    west_plan = ok(post(wst, f"/patients/{wendy.pk}/plans/", course), 201)["id"]
    ny_plan = ok(post(nyc, f"/patients/{other_patient.pk}/plans/", course), 201)["id"]
    bea_course = ok(
        post(
            nyc, f"/patients/{other_patient.pk}/medications/", {"drug": "topical_retinoid", "started_on": "2025-01-01"}
        ),
        201,
    )["id"]
    deliveries = {
        name: str(OutboxMessage.objects.filter(endpoint_id=hooks[name]).order_by("created_at", "id").first().pk)
        for name in ("lon2", "nyc")
    }
    return World(
        london=clinic,
        west=west,
        ny=other_clinic,
        dr_london=practitioner,
        dr_west=dr_west,
        dr_ny=other_practitioner,
        pat=patient,
        wendy=wendy,
        bea=other_patient,
        lon=lon,
        lon_client=lon_client,
        wst=wst,
        nyc=nyc,
        lon2=lon2,
        mine=mine,
        at_west=at_west,
        at_ny=at_ny,
        plan=plan,
        west_plan=west_plan,
        ny_plan=ny_plan,
        bea_course=bea_course,
        hooks=hooks,
        deliveries=deliveries,
    )


# --- How an answer is compared ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A request naming `{x}` (in its address or body): sent with each of `theirs` and with an id that never existed,
    expected to answer `status` both times."""

    name: str
    method: str
    path: str
    body: object
    theirs: tuple
    status: int


def _fill(value, x):
    if isinstance(value, str):
        return value.replace("{x}", str(x))
    if isinstance(value, dict):
        return {k: _fill(v, x) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, x) for v in value]
    return value


def _send(client, ref: Ref, x, **headers):
    call = getattr(client, ref.method)
    path = _fill(ref.path, x)
    if ref.body is None:
        return call(path, **headers)
    return call(path, _fill(ref.body, x), format="json", **headers)


def _missing_for(value) -> str:
    """An id that never existed for an id, a code no clinic has for a code."""
    text = str(value)
    try:
        uuid.UUID(text)
    except ValueError:
        return NO_CODE
    return str(MISSING)


def _answer(response, *refs) -> tuple:
    """What a caller learns from an answer: its status, its media type, the names of its headers and its body, with
    the id or code it named replaced by one token."""
    text = response.content.decode()
    for ref in refs:
        text = text.replace(str(ref), "<ref>")
    names = sorted(name.lower() for name in response.headers if name.lower() not in ("date", "content-length"))
    return response.status_code, response.get("Content-Type"), names, text


def _compare(client, refs: list[Ref], *, keyed: str = "", **headers) -> list:
    """Every ref whose answer for another tenant's row differs from the answer for a row that never existed; `keyed`:
    each request with an Idempotency-Key of its own, starting with it."""
    leaks = []
    for n, ref in enumerate(refs):
        for theirs in ref.theirs:
            missing = _missing_for(theirs)
            keys = [{"HTTP_IDEMPOTENCY_KEY": f"{keyed}-{n}-{i}-{theirs}"} if keyed else {} for i in (1, 2)]
            a = _send(client, ref, theirs, **headers, **keys[0])
            b = _send(client, ref, missing, **headers, **keys[1])
            if a.status_code != ref.status or _answer(a, theirs) != _answer(b, missing):
                leaks.append((ref.name, str(theirs), a.status_code, a.content[:400], b.status_code, b.content[:400]))
    return leaks


def _their_state(w: World) -> tuple:
    """Everything of West's and New York's the probes could change."""
    org_b = w.ny.organisation_id
    return (
        sorted(Appointment.objects.exclude(clinic=w.london).values_list("id", "status", "start_at", "practitioner_id")),
        sorted(Patient.objects.filter(organisation_id=org_b).values_list("id", "first_name", "merged_into_id")),
        sorted(MedicationCourse.objects.filter(patient__organisation_id=org_b).values_list("id", "ended_on")),
        sorted(PatientCondition.objects.filter(patient__organisation_id=org_b).values_list("id", "status")),
        ProcedureRecord.objects.filter(patient__organisation_id=org_b).count(),
        sorted(TreatmentPlan.objects.exclude(clinic=w.london).values_list("id", "cancelled_at")),
        sorted(
            WebhookEndpoint.objects.exclude(pk=w.hooks["lon"]).values_list(
                "id", "url", "secret", "is_active", "description", "events"
            )
        ),
        OutboxMessage.objects.filter(channel="webhook").count(),
    )


# --- Tables of references ---------------------------------------------------------------------------------------


def _url_refs(w: World) -> list[Ref]:
    """Every address that names a patient, course, appointment, plan, endpoint or delivery, with another tenant's."""
    pat, bea = w.pat.pk, w.bea.pk
    appointments = (w.at_west, w.at_ny)  # the sister site's and the other organisation's
    plans = (w.west_plan, w.ny_plan)
    hooks = (w.hooks["lon2"], w.hooks["nyc"])  # another platform of London's, and New York's
    later = {"start": "2026-03-12T10:00:00+00:00"}
    return [
        Ref("patient", "get", f"{API}/patients/{{x}}/", None, (bea,), 404),
        Ref("patient patch", "patch", f"{API}/patients/{{x}}/", {"first_name": "Mallory"}, (bea,), 404),
        Ref("history", "get", f"{API}/patients/{{x}}/procedures/", None, (bea,), 404),
        Ref(
            "history add",
            "post",
            f"{API}/patients/{{x}}/procedures/",
            {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"},
            (bea,),
            404,
        ),
        Ref("courses", "get", f"{API}/patients/{{x}}/medications/", None, (bea,), 404),
        Ref(
            "course add",
            "post",
            f"{API}/patients/{{x}}/medications/",
            {"drug": "anticoagulant", "started_on": "2026-01-01"},
            (bea,),
            404,
        ),
        Ref("their course under mine", "get", f"{API}/patients/{pat}/medications/{{x}}/", None, (w.bea_course,), 404),
        Ref(
            "their course end under mine",
            "patch",
            f"{API}/patients/{pat}/medications/{{x}}/",
            {"ended_on": "2026-02-01"},
            (w.bea_course,),
            404,
        ),
        Ref("intake", "get", f"{API}/patients/{{x}}/conditions/", None, (bea,), 404),
        Ref(
            "intake put",
            "put",
            f"{API}/patients/{{x}}/conditions/",
            [{"condition": "pregnancy", "status": "active"}],
            (bea,),
            404,
        ),
        Ref("plans of", "get", f"{API}/patients/{{x}}/plans/", None, (bea,), 404),
        Ref(
            "plan dry run for",
            "post",
            f"{API}/patients/{{x}}/plans/",
            {"template": COURSE, "start_from": "2026-04-06", "dry_run": True},
            (bea,),
            404,
        ),
        Ref("merge from", "post", f"{API}/patients/{{x}}/merge/", {"into": str(pat)}, (bea,), 404),
        Ref("appointment", "get", f"{API}/appointments/{{x}}/", None, appointments, 404),
        Ref("reschedule", "post", f"{API}/appointments/{{x}}/reschedule/", later, appointments, 404),
        Ref("reschedule check", "post", f"{API}/appointments/{{x}}/reschedule-check/", later, appointments, 404),
        Ref("cancel", "post", f"{API}/appointments/{{x}}/cancel/", {"reason": "x"}, appointments, 404),
        Ref("complete", "post", f"{API}/appointments/{{x}}/complete/", {}, appointments, 404),
        Ref("clear", "post", f"{API}/appointments/{{x}}/clear/", {"reason": "seen"}, appointments, 404),
        Ref("no-show", "post", f"{API}/appointments/{{x}}/no-show/", {}, appointments, 404),
        Ref("plan", "get", f"{API}/plans/{{x}}/", None, plans, 404),
        Ref(
            "replan",
            "post",
            f"{API}/plans/{{x}}/replan/",
            {"from_session": 2, "start": "2026-04-20T09:00:00+01:00"},
            plans,
            404,
        ),
        Ref("plan cancel", "post", f"{API}/plans/{{x}}/cancel/", {}, plans, 404),
        Ref("webhook", "get", f"{API}/webhooks/{{x}}/", None, hooks, 404),
        Ref("webhook patch", "patch", f"{API}/webhooks/{{x}}/", {"description": "mine now"}, hooks, 404),
        Ref("webhook delete", "delete", f"{API}/webhooks/{{x}}/", None, hooks, 404),
        Ref("webhook rotate", "post", f"{API}/webhooks/{{x}}/rotate-secret/", {"overlap_minutes": 0}, hooks, 404),
        Ref("deliveries", "get", f"{API}/webhooks/{{x}}/deliveries/", None, hooks, 404),
        Ref(
            "their delivery through my endpoint",
            "post",
            f"{API}/webhooks/{w.hooks['lon']}/deliveries/{{x}}/redeliver/",
            {},
            (w.deliveries["lon2"], w.deliveries["nyc"]),
            404,
        ),
    ]


def _body_refs(w: World) -> list[Ref]:
    """Every body field that names a patient, practitioner or clinic, with another tenant's (West's: the sister
    site London was not granted; New York's: another organisation), by id and, for clinics, by code."""
    pat = str(w.pat.pk)
    practitioners = (w.dr_west.pk, w.dr_ny.pk)
    clinics = (w.west.pk, w.west.code, w.ny.pk, w.ny.code)
    booking = {"patient": pat, "procedure": "botox", "start": THURSDAY}
    plan = {"template": COURSE, "start_from": "2026-04-06"}
    dry = ok(post(w.lon, f"/patients/{pat}/plans/", {**plan, "dry_run": True}))
    proposal = [{"start": s["start"], "practitioner": "{x}"} for s in dry["sessions"]]
    replan = {"from_session": 2, "start": "2026-04-20T09:00:00+01:00", "practitioner": "{x}"}
    refs = []
    for path in (f"{API}/appointments/", f"{API}/eligibility/"):
        kind = path.split("/")[-2]
        refs += [
            Ref(f"{kind} patient", "post", path, {**booking, "patient": "{x}"}, (w.bea.pk,), 400),
            Ref(f"{kind} practitioner", "post", path, {**booking, "practitioner": "{x}"}, practitioners, 400),
            Ref(f"{kind} clinic", "post", path, {**booking, "clinic": "{x}"}, clinics, 400),
        ]
    for action in ("reschedule", "reschedule-check"):
        refs.append(
            Ref(
                f"{action} practitioner",
                "post",
                f"{API}/appointments/{w.mine}/{action}/",
                {"start": THURSDAY, "practitioner": "{x}"},
                practitioners,
                400,
            )
        )
    plans = f"{API}/patients/{pat}/plans/"
    for dry_run in (True, False):
        refs += [
            Ref(
                f"plan clinic dry={dry_run}", "post", plans, {**plan, "clinic": "{x}", "dry_run": dry_run}, clinics, 400
            ),
            Ref(
                f"plan practitioner dry={dry_run}",
                "post",
                plans,
                {**plan, "practitioner": "{x}", "dry_run": dry_run},
                practitioners,
                400,
            ),
            Ref(
                f"replan practitioner dry={dry_run}",
                "post",
                f"{API}/plans/{w.plan}/replan/",
                {**replan, "dry_run": dry_run},
                practitioners,
                400,
            ),
        ]
    refs += [
        Ref("plan proposal practitioner", "post", plans, {**plan, "proposal": proposal}, practitioners, 400),
        Ref(
            "history clinic",
            "post",
            f"{API}/patients/{pat}/procedures/",
            {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00", "clinic": "{x}"},
            clinics,
            400,
        ),
        Ref(
            "new patient clinic",
            "post",
            f"{API}/patients/",
            {"first_name": "Quinn", "last_name": "Quarry", "clinic": "{x}", "confirm_new": True},
            clinics,
            400,
        ),
        Ref("merge into", "post", f"{API}/patients/{pat}/merge/", {"into": "{x}"}, (w.bea.pk,), 404),
    ]
    return refs


def _query_refs(w: World) -> list[Ref]:
    """Every list filter and availability parameter that names a patient, practitioner or clinic."""
    pat = w.pat.pk
    practitioners = (w.dr_west.pk, w.dr_ny.pk)
    clinics = (w.west.pk, w.west.code, w.ny.pk, w.ny.code)
    slots = f"{API}/availability/?procedure=botox&from=2026-03-09T00:00:00%2B00:00&to=2026-03-10T00:00:00%2B00:00"
    return [
        Ref("appointments ?patient", "get", f"{API}/appointments/?patient={{x}}", None, (w.bea.pk,), 400),
        Ref("appointments ?practitioner", "get", f"{API}/appointments/?practitioner={{x}}", None, practitioners, 400),
        Ref("appointments ?clinic", "get", f"{API}/appointments/?clinic={{x}}", None, clinics, 400),
        Ref("patients ?clinic", "get", f"{API}/patients/?clinic={{x}}", None, clinics, 400),
        Ref("practitioners ?clinic", "get", f"{API}/practitioners/?clinic={{x}}", None, clinics, 400),
        Ref("availability patient", "get", f"{slots}&patient={{x}}", None, (w.bea.pk,), 400),
        Ref("availability practitioner", "get", f"{slots}&patient={pat}&practitioner={{x}}", None, practitioners, 400),
        Ref("availability clinic", "get", f"{slots}&patient={pat}&clinic={{x}}", None, clinics, 400),
    ]


# --- In the address, in a body, in a query ---------------------------------------------------------------------------


def test_another_tenants_id_in_any_address_answers_word_for_word_as_one_that_never_existed(w):
    """docs/api.md Tenancy: 'an id in the URL that is outside your scope (or does not exist) is a 404'; the contract:
    'a 404, never a 403 that confirms it exists'. Every address that names a row, each with another organisation's
    row and (appointments, plans) a sister site's, or (webhooks) another platform's: the same 404 as for an id that
    never existed (status, code, title, detail, instance, the headers it names), each sent with an Idempotency-Key,
    and nothing of theirs changes."""
    before = _their_state(w)
    assert _compare(w.lon, _url_refs(w), keyed="qa-u-url") == []
    assert _their_state(w) == before


def test_another_tenants_id_in_a_request_body_answers_word_for_word_as_one_that_never_existed(w):
    """docs/api.md Tenancy: 'an id in a body or query (patient, practitioner, clinic) that is outside your clinics is
    a 400 with errors.<field>: ["There is no such ..."], word for word what a missing one gets'; Merge: '404
    unknown_patient when into is another organisation's record or none (one answer)'. Every body that takes such a
    reference (booking, eligibility, a move and its dry run, a plan and its dry run, a plan's chosen proposal, a
    re-plan and its dry run, a history line's clinic, a new patient's clinic, a merge's `into`), with the sister
    site's and the other organisation's practitioner and clinic (by id and by code): the same answer as for an id or
    code that never existed, and nothing is booked, moved or recorded."""
    refs = _body_refs(w)
    before = _their_state(w)
    mine = sorted(Appointment.objects.filter(clinic=w.london).values_list("id", "start_at", "practitioner_id"))
    records = ProcedureRecord.objects.count()
    assert _compare(w.lon, refs) == []
    assert _their_state(w) == before
    assert sorted(Appointment.objects.filter(clinic=w.london).values_list("id", "start_at", "practitioner_id")) == mine
    assert ProcedureRecord.objects.count() == records and Patient.objects.filter(first_name="Quinn").count() == 0


def test_another_tenants_id_in_a_filter_or_an_availability_search_answers_as_one_that_never_existed(w):
    """docs/api.md Lists: 'An id that is not one of yours (or not an id) is a 400 unknown_patient /
    unknown_practitioner / unknown_clinic, errors.<name>: ["There is no such ..."]'. Each filter and availability
    parameter, with the sister site's and the other organisation's rows, by id and by code: the whole answer (not
    only its `errors`) is the one a row that never existed gets."""
    assert _compare(w.lon, _query_refs(w)) == []


# --- If-Match and Idempotency-Key ------------------------------------------------------------------------------------


def test_the_owners_current_etag_in_if_match_opens_nothing_of_another_tenant(w):
    """docs/api.md 'Changing safely': a write compares its If-Match with the version stored. Another tenant's row
    named with the owner's own current ETag (or `*`) is still the 404 an id that never existed gets with the same
    header, never a 200 or a 412 that would confirm the version (and so the row)."""
    bea, course = w.bea.pk, w.bea_course
    etags = {
        "bea": w.nyc.get(f"{API}/patients/{bea}/")["ETag"],
        "course": w.nyc.get(f"{API}/patients/{bea}/medications/{course}/")["ETag"],
        "intake": w.nyc.get(f"{API}/patients/{bea}/conditions/")["ETag"],
        "ny": w.nyc.get(f"{API}/appointments/{w.at_ny}/")["ETag"],
        "west": w.wst.get(f"{API}/appointments/{w.at_west}/")["ETag"],
    }
    assert all(tag.startswith('"') for tag in etags.values()), etags
    before = _their_state(w)
    cases = [
        ("bea", Ref("patient patch", "patch", f"{API}/patients/{{x}}/", {"first_name": "Mallory"}, (bea,), 404)),
        (
            "course",
            Ref(
                "course end",
                "patch",
                f"{API}/patients/{bea}/medications/{{x}}/",
                {"ended_on": "2026-02-01"},
                (course,),
                404,
            ),
        ),
        (
            "intake",
            Ref(
                "intake put",
                "put",
                f"{API}/patients/{{x}}/conditions/",
                [{"condition": "eczema", "status": "active"}],
                (bea,),
                404,
            ),
        ),
    ]
    for name, appointment in (("ny", w.at_ny), ("west", w.at_west)):
        for action, body in (
            ("cancel", {}),
            ("reschedule", {"start": "2026-03-12T10:00:00+00:00"}),
            ("complete", {}),
            ("no-show", {}),
        ):
            cases.append(
                (
                    name,
                    Ref(f"{action} {name}", "post", f"{API}/appointments/{{x}}/{action}/", body, (appointment,), 404),
                )
            )
    leaks = []
    for tag_name, ref in cases:
        for header in (etags[tag_name], "*"):
            leaks += _compare(w.lon, [ref], HTTP_IF_MATCH=header)
    assert leaks == []
    assert _their_state(w) == before


def test_an_idempotency_key_never_replays_or_refuses_across_tenants(w):
    """docs/api.md Idempotency: 'Keys are per caller.' Another tenant sending a platform's key with that platform's
    very request gets its own answer (the request names a patient it cannot see: the 400 a fresh key gets), never the
    stored 201 with the other tenant's appointment; a key another platform used is no 422 for it either (which would
    confirm the other's request); a sister site replaying London's keyed cancel of London's visit gets the 404 an
    appointment that never existed gets, not the stored 200."""
    lena = PatientFactory(clinic=w.london, first_name="Lena", last_name="Keyed")
    body = {"patient": str(lena.pk), "procedure": "filler", "start": "2026-03-10T11:00:00+00:00"}
    first = post(w.lon, "/appointments/", body, key="qa-u-shared-key")
    made = ok(first, 201)["id"]

    theirs = post(w.nyc, "/appointments/", body, key="qa-u-shared-key")
    fresh = post(w.nyc, "/appointments/", body, key="qa-u-new-york-own")
    assert "Idempotent-Replayed" not in theirs and made not in theirs.content.decode()
    assert _answer(theirs) == _answer(fresh)
    assert problem(theirs, 400, "unknown_patient")["errors"] == {"patient": ["There is no such patient."]}

    nora = PatientFactory(clinic=w.ny, first_name="Nora", last_name="Keyed")
    own = {"patient": str(nora.pk), "procedure": "filler", "start": "2026-03-10T11:00:00-04:00"}
    post(w.lon, "/appointments/", {**body, "start": "2026-03-11T11:00:00+00:00"}, key="qa-u-london-used")
    assert ok(post(w.nyc, "/appointments/", own, key="qa-u-london-used"), 201)["patient"] == str(nora.pk)

    cancelled = post(w.lon, f"/appointments/{made}/cancel/", {}, key="qa-u-cancel")
    assert ok(cancelled)["status"] == "cancelled"
    replay = post(w.wst, f"/appointments/{made}/cancel/", {}, key="qa-u-cancel")
    nobody = post(w.wst, f"/appointments/{MISSING}/cancel/", {}, key="qa-u-cancel-nobody")
    assert "Idempotent-Replayed" not in replay
    assert _answer(replay, made) == _answer(nobody, MISSING)
    problem(replay, 404, "unknown_appointment")


# --- Merged records -------------------------------------------------------------------------------------------------


def test_another_organisations_merged_record_is_not_found_rather_than_redirected_to_its_survivor(w):
    """docs/api.md Merging: 'A merged record's address answers 308 Permanent Redirect' with `merged_into` and a
    `Location` naming the survivor; 'Tombstones are in no list, search or body'. Of another organisation, a
    tombstone's id is one more id that is not the caller's: the 404 (or 400) an id that never existed gets, without
    the survivor's id or a Location, whatever the method (a PATCH there is no 409 `patient_merged`)."""
    twin = PatientFactory(clinic=w.ny, first_name="Beatrix", last_name="Twin")
    merged = post(w.nyc, f"/patients/{twin.pk}/merge/", {"into": str(w.bea.pk)})
    assert ok(merged)["id"] == str(w.bea.pk)
    # the probe can tell: New York's own platform is redirected to the survivor
    there = w.nyc.get(f"{API}/patients/{twin.pk}/")
    assert there.status_code == 308 and str(w.bea.pk) in there["Location"]

    pat = w.pat.pk
    refs = [
        Ref("read", "get", f"{API}/patients/{{x}}/", None, (twin.pk,), 404),
        Ref("patch", "patch", f"{API}/patients/{{x}}/", {"first_name": "Mallory"}, (twin.pk,), 404),
        Ref("intake", "get", f"{API}/patients/{{x}}/conditions/", None, (twin.pk,), 404),
        Ref("intake put", "put", f"{API}/patients/{{x}}/conditions/", [], (twin.pk,), 404),
        Ref(
            "history add",
            "post",
            f"{API}/patients/{{x}}/procedures/",
            {"procedure": "botox", "performed_at": "2026-02-01T10:00:00+00:00"},
            (twin.pk,),
            404,
        ),
        Ref("merge it", "post", f"{API}/patients/{{x}}/merge/", {"into": str(pat)}, (twin.pk,), 404),
        Ref("merge into it", "post", f"{API}/patients/{pat}/merge/", {"into": "{x}"}, (twin.pk,), 404),
        Ref(
            "booking",
            "post",
            f"{API}/eligibility/",
            {"patient": "{x}", "procedure": "botox", "start": THURSDAY},
            (twin.pk,),
            400,
        ),
        Ref("filter", "get", f"{API}/appointments/?patient={{x}}", None, (twin.pk,), 400),
        Ref("fhir", "get", "/fhir/r4/Appointment?patient=Patient/{x}", None, (twin.pk,), 200),
    ]
    assert _compare(w.lon, refs, keyed="qa-u-tomb") == []
    for ref in refs:
        answer = _send(w.lon, ref, twin.pk)
        assert str(w.bea.pk) not in answer.content.decode() and "Location" not in answer, ref.name
    twin.refresh_from_db()
    assert twin.first_name == "Beatrix" and str(twin.merged_into_id) == str(w.bea.pk)


# --- Counts and pages -----------------------------------------------------------------------------------------------


def test_counts_and_pages_never_count_a_sister_sites_appointments_or_plans(w):
    """Contract v1 additions: a caller 'lists ... appointments only at the clinics it was granted'. Wendy (a patient
    of London's organisation) has four appointments and a course at West and one appointment in London: London's
    `count`, its last page (`page_out_of_range` past it), its `next` link, FHIR's `total` and its pages all say one,
    and her plans list says none; so no page number or count confirms what West holds."""
    here = api_book(w.lon, w.wendy, "2026-07-01T10:00:00+01:00")["id"]
    at_west = Appointment.objects.filter(patient=w.wendy, clinic=w.west).count()
    assert at_west == 4  # her botox and the three sessions of West's course

    listed = ok(w.lon.get(f"{API}/appointments/?patient={w.wendy.pk}&page_size=1"))
    assert (listed["count"], listed["next"], [row["id"] for row in listed["results"]]) == (1, None, [here])
    past = w.lon.get(f"{API}/appointments/?patient={w.wendy.pk}&page_size=1&page=2")
    assert problem(past, 400, "page_out_of_range")["errors"] == {"page": ["That page is past the last one."]}
    everything = ok(w.lon.get(f"{API}/appointments/?page_size=200"))
    assert everything["count"] == Appointment.objects.filter(clinic=w.london).count()
    assert {row["clinic"] for row in everything["results"]} == {str(w.london.pk)}

    bundle = ok(w.lon.get(f"/fhir/r4/Appointment?patient=Patient/{w.wendy.pk}&_count=1"))
    assert bundle["total"] == 1 and [link["relation"] for link in bundle["link"]] == ["self"]
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == [here]
    assert w.lon.get(f"/fhir/r4/Appointment?patient=Patient/{w.wendy.pk}&_count=1&page=2").status_code == 400

    plans = ok(w.lon.get(f"{API}/patients/{w.wendy.pk}/plans/"))
    assert (plans["count"], plans["results"]) == (0, [])
    assert problem(w.lon.get(f"{API}/patients/{w.wendy.pk}/plans/?page=2"), 400, "page_out_of_range")


# --- Parameters an operation does not define ------------------------------------------------------------------------


def test_expand_include_and_organisation_parameters_widen_nothing(w):
    """docs/api.md: 'Parameters the operation does not define are ignored': an `expand`, `include`, `fields`,
    `organisation` or a django-filter-style lookup (`clinic__organisation`) naming the other organisation changes
    nothing in a list or a read. FHIR reads its parameters strictly (fhir/search.py): `_include`, `_revinclude`,
    `_has`, chains and modifiers are a 400 OperationOutcome, never a Bundle carrying another tenant's resources."""
    org_b, ny = w.ny.organisation_id, w.ny.pk
    extras = [
        f"organisation={org_b}",
        f"clinic__organisation={org_b}",
        f"patient__organisation={org_b}",
        f"clinic__in={ny}",
        f"clinic_id={ny}",
        "expand=patient,practitioner,clinic",
        "include=all",
        "scope=all",
        "fields=*",
    ]
    for path in ("/appointments/", "/patients/", "/practitioners/", "/clinics/", "/plan-templates/"):
        plain = ok(w.lon.get(f"{API}{path}?page_size=200"))
        for extra in extras:
            assert ok(w.lon.get(f"{API}{path}?page_size=200&{extra}")) == plain, (path, extra)
    for path in (f"/appointments/{w.mine}/", f"/patients/{w.pat.pk}/", f"/plans/{w.plan}/"):
        plain = ok(w.lon.get(f"{API}{path}"))
        assert ok(w.lon.get(f"{API}{path}?expand=patient,plan,appointments&include=all&organisation={org_b}")) == plain

    theirs = (str(w.bea.pk), w.at_ny, str(w.dr_ny.pk), str(ny))
    for query in (
        "_include=Appointment:patient",
        "_include=*",
        "_revinclude=Appointment:patient",
        f"_has:Appointment:patient:_id={w.at_ny}",
        f"patient.organization=Organization/{org_b}",
        f"patient:Patient={w.bea.pk}",
        f"location:missing=false&location={ny}",
        "_elements=participant",
        "_summary=false",
        "_total=accurate",
    ):
        response = w.lon.get(f"/fhir/r4/Appointment?{query}")
        assert response.status_code == 400, (query, response.status_code)
        assert ok(response, 400)["resourceType"] == "OperationOutcome"
        assert not any(pk in response.content.decode() for pk in theirs[:3]), query


# --- FHIR --------------------------------------------------------------------------------------------------------------


def test_fhir_searches_naming_another_tenants_rows_answer_as_for_rows_that_never_existed(w):
    """docs/fhir.md: the same keys and scope as v1. Every reference a search takes (GET and POST `_search`), naming
    the other organisation's or the sister site's patient, practitioner, location, appointment or schedule: the whole
    Bundle (total, links, entries) is the one a row that never existed gives; and a list of alternatives that
    mixes the caller's own row with another tenant's finds the caller's alone."""
    people = (w.bea.pk,)
    doctors = (w.dr_west.pk, w.dr_ny.pk)
    places = (w.west.pk, w.ny.pk)
    appointments = (w.at_west, w.at_ny)
    searches = {
        "Appointment": [
            ("patient", "Patient/{x}", people),
            ("actor", "Patient/{x}", people),
            ("practitioner", "Practitioner/{x}", doctors),
            ("actor", "Practitioner/{x}", doctors),
            ("location", "Location/{x}", places),
            ("actor", "Location/{x}", places),
            ("_id", "{x}", appointments),
        ],
        "Schedule": [
            ("actor", "Practitioner/{x}", doctors),
            ("actor", "Location/{x}", places),
            ("_id", "{x}", doctors),
        ],
        "Slot": [("schedule", "Schedule/{x}", doctors)],
    }
    leaks = []
    for kind, params in searches.items():
        for name, value, theirs in params:
            window = "&start=2026-03-03" if kind == "Slot" else ""
            refs = [Ref(f"{kind} {name}", "get", f"/fhir/r4/{kind}?{name}={value}{window}", None, theirs, 200)]
            leaks += _compare(w.lon, refs)
            for pk in theirs:  # the same search by POST, its parameters in a form body
                answers = [
                    w.lon.post(
                        f"/fhir/r4/{kind}/_search",
                        urlencode({name: value.replace("{x}", str(x)), **({"start": "2026-03-03"} if window else {})}),
                        content_type="application/x-www-form-urlencoded",
                    )
                    for x in (pk, MISSING)
                ]
                if _answer(answers[0], pk) != _answer(answers[1], MISSING) or answers[0].status_code != 200:
                    leaks.append((f"POST {kind} {name}", str(pk), answers[0].content[:300]))
    assert leaks == []

    mixed = ok(w.lon.get(f"/fhir/r4/Appointment?_id={w.mine},{w.at_ny},{w.at_west}"))
    assert (mixed["total"], [e["resource"]["id"] for e in mixed["entry"]]) == (1, [w.mine])
    mixed = ok(w.lon.get(f"/fhir/r4/Appointment?patient=Patient/{w.bea.pk},Patient/{w.pat.pk}&_count=200"))
    assert {e["resource"]["id"] for e in mixed["entry"]} == set(
        str(pk) for pk in Appointment.objects.filter(patient=w.pat, clinic=w.london).values_list("id", flat=True)
    )


# --- Other callers: staff sessions, organisation grants, a scope read as a subquery ---------------------------------


@pytest.fixture(params=["staff-session", "organisation-grant", "subquery-scope"])
def caller(request, w, monkeypatch):
    """Callers whose scope is read another way (api.access.Caller): a receptionist's memberships, a client granted
    London's whole organisation, and a London client whose scope is kept as a subquery (past SCOPE_INLINE_MAX)."""
    if request.param == "staff-session":
        yield session(staff(w.london, StaffRole.RECEPTIONIST, "qa-u-desk"))
        return
    if request.param == "organisation-grant":
        client = ApiClient(name="qa-u-organisation")
        key = client.set_new_key()
        client.save()
        client.organisations.set([w.london.organisation])
        yield http(key)
        return
    connections["default"].__dict__.pop("_compiled_queries", None)  # as tests/api/test_scope.py: no stale LIMIT
    monkeypatch.setattr(access, "SCOPE_INLINE_MAX", 0)
    yield w.lon
    connections["default"].__dict__.pop("_compiled_queries", None)


def test_every_kind_of_caller_gets_the_never_existed_answer_for_another_organisations_ids(w, caller):
    """api/access.py: 'tenancy is enforced in one place'. The same references, from a front-desk session, from a
    platform granted the whole organisation and from one whose scope is a subquery: another organisation's patient,
    appointment, plan, practitioner and clinic answer as rows that never existed, in addresses, bodies, filters and
    FHIR."""
    pat = str(w.pat.pk)
    booking = {"patient": pat, "procedure": "botox", "start": THURSDAY}
    refs = [
        Ref("patient", "get", f"{API}/patients/{{x}}/", None, (w.bea.pk,), 404),
        Ref("appointment", "get", f"{API}/appointments/{{x}}/", None, (w.at_ny,), 404),
        Ref("cancel", "post", f"{API}/appointments/{{x}}/cancel/", {}, (w.at_ny,), 404),
        Ref("plan", "get", f"{API}/plans/{{x}}/", None, (w.ny_plan,), 404),
        Ref("book patient", "post", f"{API}/appointments/", {**booking, "patient": "{x}"}, (w.bea.pk,), 400),
        Ref(
            "book practitioner", "post", f"{API}/appointments/", {**booking, "practitioner": "{x}"}, (w.dr_ny.pk,), 400
        ),
        Ref("check clinic", "post", f"{API}/eligibility/", {**booking, "clinic": "{x}"}, (w.ny.pk, w.ny.code), 400),
        Ref("filter", "get", f"{API}/appointments/?practitioner={{x}}", None, (w.dr_ny.pk,), 400),
        Ref(
            "availability",
            "get",
            f"{API}/availability/?patient={pat}&procedure=botox&clinic={{x}}",
            None,
            (w.ny.pk, w.ny.code),
            400,
        ),
        Ref("fhir read", "get", "/fhir/r4/Appointment/{x}", None, (w.at_ny,), 404),
        Ref("fhir search", "get", "/fhir/r4/Appointment?patient=Patient/{x}", None, (w.bea.pk,), 200),
    ]
    before = _their_state(w)
    assert _compare(caller, refs) == []
    assert _their_state(w) == before
    assert ok(caller.get(f"{API}/patients/{pat}/"))["id"] == pat  # the caller does reach its own


# --- What an answer costs ---------------------------------------------------------------------------------------------


# The references a service checks with no scope of its own (scheduler.booking._why_not with `within` None: a move
# stays at its clinic, a plan's sessions at the plan's): the practitioner is looked up anywhere first.
CLINIC_BOUND = (
    "reschedule practitioner",
    "reschedule-check practitioner",
    "replan practitioner dry=True",
    "replan practitioner dry=False",
    "plan proposal practitioner",
)


def _statement_gaps(client, refs: list[Ref]) -> list:
    """Each reference to another tenant's row that runs another number of statements than one to a row that never
    existed (each request once warmed up: caches and compiled statements)."""
    gaps = []
    for ref in refs:
        for theirs in ref.theirs:
            missing = _missing_for(theirs)
            _send(client, ref, missing)
            counts = []
            for value in (theirs, missing):
                with CaptureQueriesContext(connection) as queries:
                    _send(client, ref, value)
                counts.append(len(queries.captured_queries))
            if counts[0] != counts[1]:
                gaps.append((ref.name, str(theirs), *counts))
    return gaps


def test_a_reference_to_another_tenants_row_costs_the_statements_a_missing_one_costs(w):
    """The same answer must not come a different way: a reference to another tenant's row that runs more statements
    than one to a row that never existed (a look-up that finds it, then says 'no such') answers measurably later, an
    oracle for what exists elsewhere. Every body, address and filter reference but the clinic-bound ones below."""
    refs = _body_refs(w) + [ref for ref in _url_refs(w) if ref.method == "get"] + _query_refs(w)
    gaps = _statement_gaps(w.lon, [ref for ref in refs if ref.name not in CLINIC_BOUND])
    assert gaps == [], "\n".join(map(str, gaps))


def test_a_practitioner_named_in_a_move_or_a_plan_costs_the_statements_a_missing_one_costs(w):
    """As above, for the practitioner a move (and its dry run), a re-plan (and its dry run) or a plan's chosen proposal
    names: these are checked against the appointment's or the plan's clinic, not the caller's scope. Mended on 6
    December: with no scope, the practitioner is looked for at that clinic only (scheduler.booking._why_not)."""
    refs = [ref for ref in _body_refs(w) if ref.name in CLINIC_BOUND]
    assert len(refs) == len(CLINIC_BOUND)
    gaps = _statement_gaps(w.lon, refs)
    assert gaps == [], "\n".join(map(str, gaps))


# --- Webhooks: a clinic no longer granted -----------------------------------------------------------------------------


def test_a_redelivery_of_an_event_at_a_clinic_no_longer_granted_is_refused_not_queued(w):
    """docs/api.md Idempotency (decided 6 December): 'any new request, read or write, is held to the scope as it
    stands'; Webhooks: a redelivery that would not be sent (an event no longer subscribed to) is refused up front
    ('refused here, not answered 201 and dropped', reminders/webhooks.py). A platform that lost West asks for a
    redelivery of a West booking's event: a new write about an appointment outside its clinics."""
    client, key = new_api_client(w.london, w.west, name="qa-u-two-sites")
    platform = http(key)
    hook = register_webhook(platform, "https://two-sites.example.com/in")["id"]
    visit = api_book(w.wst, PatientFactory(clinic=w.west), "2026-03-06T10:00:00+00:00")["id"]
    delivery = OutboxMessage.objects.get(endpoint_id=hook, appointment_id=visit)
    client.clinics.remove(w.west)
    problem(platform.get(f"{API}/appointments/{visit}/"), 404, "unknown_appointment")

    response = platform.post(f"{API}/webhooks/{hook}/deliveries/{delivery.pk}/redeliver/", {}, format="json")
    assert response.status_code != 201, response.content[:300]
    assert 400 <= response.status_code < 500 and visit not in response.content.decode()
    assert OutboxMessage.objects.filter(endpoint_id=hook).count() == 1
    # Mended on 6 December: the endpoint's deliveries are those at the clinics its client is granted as it stands, so
    # the redelivery is a 404 as for a delivery that never was, and the list no longer shows it.
    problem(response, 404, "unknown_webhook_delivery")
    listed = platform.get(f"{API}/webhooks/{hook}/deliveries/")
    assert listed.status_code == 200 and str(delivery.pk) not in listed.content.decode()


# --- Ids that count other tenants' rows -------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="KNOWN, left for the product (docs/api.md, Booking refusals; the closing note): an intake line's id in `conflicts_with` (and a rule's in `rule`) is a database sequence shared by "
    "every organisation (PatientCondition / IntervalRule BigAutoField): the gap between two ids a platform provokes "
    "counts the other organisations' intake lines; contract: 'IDs are opaque strings'.",
)
def test_ids_a_refusal_names_do_not_count_another_organisations_records(w):
    """api-contract: 'IDs are opaque strings'; nothing of another organisation may be 'confirmed to exist'. A platform
    records an absolute contraindication and reads the id its refusal names, twice; between the two another
    organisation records three intake lines. If the ids are a counter shared by every organisation, the second gap
    is the first plus three: the platform has counted another tenant's writes."""
    check = {"patient": str(w.pat.pk), "procedure": "microneedling", "start": "2026-09-01T10:00:00+01:00"}

    def line_id(*conditions) -> str:
        lines = [{"condition": code, "status": "active"} for code in conditions]
        ok(w.lon.put(f"{API}/patients/{w.pat.pk}/conditions/", lines, format="json"))
        answer = ok(post(w.lon, "/eligibility/", check))
        named = [
            v["conflicts_with"]["id"] for v in answer["violations"] if v["conflicts_with"]["code"] == conditions[-1]
        ]
        assert named, answer["violations"]
        return named[0]

    first = line_id("scleroderma")
    second = line_id("scleroderma", "cardiac_abnormality")
    lines = [{"condition": c, "status": "history"} for c in ("eczema", "diabetes", "psoriasis")]
    ok(w.nyc.put(f"{API}/patients/{w.bea.pk}/conditions/", lines, format="json"))
    third = line_id("scleroderma", "cardiac_abnormality", "clotting_disorder")
    assert not (first.isdigit() and second.isdigit() and third.isdigit()) or (
        int(third) - int(second) == int(second) - int(first)
    ), (first, second, third)
