"""QA probe of the FHIR R4 read surface at its edges, read as a FHIR client would (every Bundle, resource and
OperationOutcome validated with `fhir.resources`). Each test quotes the promise it checks: docs/fhir.md, docs/api.md
('The same data, read-only, as FHIR R4 under /fhir/r4/ with the same keys and scope'), the api-contract's v1
additions (organisations, merged records) and, where docs/fhir.md leans on it, the R4 specification itself.

Goes past tests/fhir/test_fhir_api.py and the FHIR part of tests/qa/test_integrations_probe.py: method handling and
the Allow header, HEAD, oversized and over-long requests, hosts, throttling, `_format`, non-canonical ids, date
prefixes and partial dates, `_count` values, repeated `_id` and `schedule`, token systems, absolute references,
Slot windows and their prefixes, DST nights in London and New York, a local midnight in Sydney, the status map
searched code by code, tenancy in one organisation, merged patients, and paging links.

The clock is Monday 2 March 2026, 09:00 UTC, ticking (tests/api/conftest.py). London is on GMT until Sunday
29 March (BST after, the change at 01:00 GMT); New York on EST until Sunday 8 March, and back from EDT on Sunday
1 November (01:00-02:00 local happens twice).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import time_machine
from fhir.resources.R4B.bundle import Bundle

from clinic.models import Appointment, AppointmentStatus, TimeOff, WorkingHours
from scheduler.booking import appointment_check_in
from scheduler.lifecycle import Actor
from tests.api.conftest import _clock, http, new_api_client  # noqa: F401 (_clock: autouse fixture)
from tests.factories import ClinicFactory, PatientConditionFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import FHIR_JSON, api_book, fhir_ids, fhir_json, fhir_outcome, fhir_search

pytestmark = pytest.mark.django_db

R4_APPOINTMENT_STATUSES = (
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
)


# --- the world: organisation A (London and its sister site West), organisation B (New York) ----------------------
# London (`clinic`), West, Dr Ada, Pat Lee and the London platform (`api`) are tests/api/conftest.py's, through
# tests/qa/conftest.py.


@pytest.fixture
def newyork(catalogue):
    return ClinicFactory(code="newyork", name="New York Clinic", timezone="America/New_York")


@pytest.fixture
def clinical_api(clinic, west):
    """A platform with the clinician's right, granted both sites of organisation A."""
    return http(new_api_client(clinic, west, name="clinical", clinical=True)[1])


# --- helpers ---------------------------------------------------------------------------------------------------


def empties(value, where="$") -> list[str]:
    """Where a JSON document holds an empty array, object or string, or a null."""
    found = []
    if value in ([], {}, "", None):
        return [where]
    if isinstance(value, dict):
        for key, item in value.items():
            found += empties(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += empties(item, f"{where}[{index}]")
    return found


def links(body: dict) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in body["link"]}


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def worker(clinic, name: str, hours: dict[int, tuple[time, time]], procedures=None):
    """A practitioner with the given weekly hours (weekday → (from, to), local time)."""
    doctor = PractitionerFactory(clinic=clinic, name=name, hours=[], procedures=procedures)
    for weekday, (start, end) in hours.items():
        WorkingHours.objects.create(practitioner=doctor, weekday=weekday, start_time=start, end_time=end)
    return doctor


# ============================================ Format and errors =================================================


def test_no_answer_holds_an_empty_array_or_object(api, practitioner, clinic):
    """docs/fhir.md: 'Every answer is application/fhir+json'; R4 JSON (formats.html): 'JSON objects and arrays are
    never empty, and properties never have null values ... Omit a property if it is empty'. A search that finds
    nothing and a practitioner who does no procedure yet must leave `entry` and `serviceType` out, not send [].
    Failed before: `"entry": []` and `"serviceType": []`; fixed in fhir.views.FhirSearchView.bundle (no entry when
    nothing matched) and fhir.mapping.compact (every resource built without empty values)."""
    PractitionerFactory(clinic=clinic, name="Dr New", procedures=[])
    answers = {
        "empty search": json.loads(api.get("/fhir/r4/Appointment?date=2027-01-01").content),
        "schedules": json.loads(api.get("/fhir/r4/Schedule").content),
        "slots": json.loads(api.get("/fhir/r4/Slot?start=ge2026-03-03&start=lt2026-03-04").content),
    }
    found = {name: empties(body) for name, body in answers.items()}
    assert found == {name: [] for name in answers}, found


def test_a_405_allow_header_names_only_the_methods_that_work(api, practitioner):
    """docs/fhir.md: 'a write to /fhir/r4/ is a 405 that says so'. RFC 9110 15.5.6: a 405 'MUST generate an Allow
    header field containing a list of the target resource's currently supported methods'. The method refused
    cannot be one of them. Failed before: `Allow: GET, HEAD, POST, PUT, PATCH, DELETE`; fixed in fhir.views.FhirView
    (http_method_names is get and head only, so DRF's Allow lists those; POST search is its own route)."""
    for method in ("post", "put", "patch", "delete"):
        for path in (f"/fhir/r4/Schedule/{practitioner.pk}", "/fhir/r4/Appointment", "/fhir/r4/metadata"):
            response = getattr(api, method)(path, {}, format="json")
            fhir_outcome(response, 405)
            allowed = [m.strip() for m in response["Allow"].split(",")]
            assert allowed == ["GET", "HEAD"], (method, path, response["Allow"])
    response = api.get("/fhir/r4/Appointment/_search")  # the search-by-POST address serves POST alone
    assert fhir_outcome(response, 405) and response["Allow"] == "POST"


def test_head_answers_as_get_does_without_a_body(api, patient, practitioner, newyork):
    """docs/fhir.md: reads and searches are GET; HEAD is GET without the body (RFC 9110 9.3.2): same status, same
    FHIR content type, including the 401 and a 404 for what is not yours."""
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    elsewhere = PractitionerFactory(clinic=newyork)
    for path, status in [
        (f"/fhir/r4/Appointment/{made}", 200),
        ("/fhir/r4/Appointment?date=2026-03-03", 200),
        ("/fhir/r4/Slot?start=2026-03-03", 200),
        ("/fhir/r4/metadata", 200),
        (f"/fhir/r4/Schedule/{elsewhere.pk}", 404),
        ("/fhir/r4/Appointment?bogus=1", 400),
    ]:
        response = api.head(path)
        assert response.status_code == status, (path, response.status_code)
        assert response["Content-Type"].startswith(FHIR_JSON), path
        assert response.content == b"", path
    assert http().head("/fhir/r4/Appointment").status_code == 401


def test_other_methods_and_post_search_are_operation_outcomes(api, practitioner):
    """docs/fhir.md: 'Every error is an OperationOutcome with one issue, never HTML and never a bare 500'. OPTIONS,
    TRACE and a made-up method on a read, a search and metadata: each an OperationOutcome 4xx."""
    for method in ("OPTIONS", "TRACE", "PROPFIND", "PURGE"):
        for path in ("/fhir/r4/metadata", "/fhir/r4/Appointment", f"/fhir/r4/Schedule/{practitioner.pk}"):
            response = api.generic(method, path)
            assert 400 <= response.status_code < 500, (method, path, response.status_code)
            fhir_outcome(response, response.status_code)


def test_a_search_by_post_is_served(api, patient, practitioner):
    """R4 http.html search: `POST [base]/[type]/_search` with an application/x-www-form-urlencoded body is the same
    search as GET (and keeps patient ids out of addresses and logs). Failed before: a 405 'read-only'; fixed by
    the [type]/_search routes (fhir/urls.py) and fhir.views.FhirSearchView.post, which joins the address's and the
    body's parameters. Its links are GET addresses; a POST to [type] itself stays a 405 (no create)."""
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    response = api.post(
        "/fhir/r4/Appointment/_search",
        f"patient=Patient/{patient.pk}",
        content_type="application/x-www-form-urlencoded",
    )
    body = fhir_json(response)
    Bundle.model_validate(body)
    assert [e["resource"]["id"] for e in body["entry"]] == [made]
    assert f"patient=Patient%2F{patient.pk}" in links(body)["self"] and "/_search" not in links(body)["self"]
    assert body["entry"][0]["fullUrl"] == f"http://testserver/fhir/r4/Appointment/{made}"
    assert fhir_outcome(
        api.post("/fhir/r4/Appointment", "patient=x", content_type="application/x-www-form-urlencoded"), 405
    )


def test_too_many_search_parameters_are_a_400_not_a_500(api, practitioner):
    """docs/fhir.md: 'Every error is an OperationOutcome ... never a bare 500'; 'The HTTP status is the one v1 would
    give'. A query of 1001 one-letter parameters (2,001 characters, under the 4,000 a URI may have) is bad input,
    as one unknown parameter is. Failed before: a 500; fixed in fhir.views.exception_handler (TooManyFieldsSent
    and any other SuspiciousOperation are a 400 `invalid`)."""
    assert fhir_outcome(api.get("/fhir/r4/Appointment?a"), 400)["expression"] == ["a"]
    query = "&".join(["a"] * 1001)
    assert len(query) < 4000
    assert api.get(f"/api/v1/clinics/?{query}").status_code == 400  # v1's answer to the same query
    issue = fhir_outcome(api.get(f"/fhir/r4/Appointment?{query}"), 400)
    assert issue["code"] == "invalid"


def test_an_overlong_address_or_header_is_too_long(api, practitioner):
    """docs/fhir.md: '414/431 too-long'. A query of 5,000 characters and a 9,000-character header: OperationOutcomes
    414 and 431, both `too-long`, on a search and on metadata (which needs no key)."""
    long_query = "_id=" + ",".join([str(uuid.uuid4())] * 140)
    for client, path in [(api, f"/fhir/r4/Appointment?{long_query}"), (http(), f"/fhir/r4/metadata?{long_query}")]:
        assert fhir_outcome(client.get(path), 414)["code"] == "too-long"
    for client, path in [(api, "/fhir/r4/Appointment"), (http(), "/fhir/r4/metadata")]:
        assert fhir_outcome(client.get(path, HTTP_X_LONG="y" * 9000), 431)["code"] == "too-long"


def test_a_refused_host_is_an_operation_outcome(api, practitioner):
    """docs/fhir.md: 'Every error is an OperationOutcome with one issue, never HTML'. Failed before: Django's HTML
    400 page; fixed by fhir.handlers (config/urls.py's handler400/403/404/500: an OperationOutcome under /fhir/)."""
    response = api.get("/fhir/r4/metadata", HTTP_HOST="fhir.attacker.example")
    assert fhir_outcome(response, 400)["code"] == "invalid"


def test_addresses_beside_the_base_are_operation_outcomes(api):
    """A FHIR client with a slightly wrong base URL reads FHIR JSON, not HTML. Failed before: Django's HTML 404
    page; fixed by mounting fhir/urls.py at /fhir/ with a catch-all (fhir.views.UnknownView) beside the base."""
    for path in ("/fhir/metadata", "/fhir/R4/metadata", "/fhir/r4x/metadata", "/fhir/"):
        fhir_outcome(api.get(path), 404)


def test_format_parameter_never_changes_the_format(api, practitioner):
    """docs/fhir.md: 'Every answer is application/fhir+json, whatever Accept says (this server has one format)';
    `_format` is a common parameter. Any `_format` reads as JSON; DRF's own `format` is not a FHIR parameter (400
    naming it); an empty `_format` is an empty value (400)."""
    for value in ("json", "application/fhir+json", "xml", "application/fhir+xml", "text/turtle", "html"):
        body, _ = fhir_search(api, f"/fhir/r4/Schedule?_format={quote(value)}")
        assert body["total"] == 1, value
        read = api.get(f"/fhir/r4/Schedule/{practitioner.pk}?_format={quote(value)}", HTTP_ACCEPT="text/html")
        assert fhir_json(read)["resourceType"] == "Schedule", value
    assert fhir_outcome(api.get("/fhir/r4/Schedule?format=json"), 400)["expression"] == ["format"]
    assert fhir_outcome(api.get("/fhir/r4/Schedule?_format="), 400)["expression"] == ["_format"]


def test_a_throttled_fhir_caller_is_told_when_to_come_back(api, practitioner, settings):
    """docs/fhir.md: 'The throttle is the v1 one (API_THROTTLE_RATE, 429 with Retry-After)'; '429 throttled'. The
    v1 and FHIR requests of one key share the budget."""
    settings.API_THROTTLE_RATE = "3/min"
    assert api.get("/api/v1/clinics/").status_code == 200
    fhir_search(api, "/fhir/r4/Schedule")
    fhir_json(api.get(f"/fhir/r4/Schedule/{practitioner.pk}"))
    response = api.get("/fhir/r4/Appointment")
    issue = fhir_outcome(response, 429)
    assert issue["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60


# ============================================ Ids ================================================================


def test_a_read_answers_the_id_it_was_asked_for_or_not_found(api, patient, practitioner):
    """docs/fhir.md: 'GET Appointment/{id} (read)'; R4 http.html read. Ids that are not ours (not the canonical
    lower-case UUID the server hands out) name nothing here: 404. Failed before: a 200 under the canonical id;
    fixed in fhir.search.canonical_id (reads and every id in a search)."""
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    for kind, pk in (("Appointment", made), ("Schedule", str(practitioner.pk))):
        for spelling in (pk.upper(), pk.replace("-", ""), "{" + pk + "}", "urn:uuid:" + pk):
            fhir_outcome(api.get(f"/fhir/r4/{kind}/{quote(spelling)}"), 404)
        assert fhir_json(api.get(f"/fhir/r4/{kind}/{pk}"))["id"] == pk


def test_another_organisations_or_sites_ids_read_as_unknown_ones(api, patient, practitioner, west, newyork):
    """Contract v1 additions: 'It lists, books and acts on appointments only at the clinics it was granted';
    'Anything of another organisation is a 404'; api-contract: 'a 404, never a 403 that confirms it exists'. The
    404 for a sister site's or another organisation's appointment or schedule is word for word the 404 for an id
    that never existed, and the shared patient's search shows only the granted site's appointments."""
    clinical = http(new_api_client(west, name="west platform")[1])
    at_west = PractitionerFactory(clinic=west, name="Dr West")
    here = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    there = api_book(clinical, patient, "2026-03-04T10:00:00+00:00", practitioner=str(at_west.pk))["id"]
    ny_doctor = PractitionerFactory(clinic=newyork)
    ny_patient = PatientFactory(clinic=newyork)
    far = api_book(http(new_api_client(newyork)[1]), ny_patient, "2026-03-03T15:00:00+00:00")["id"]

    def not_found(kind, pk):
        response = api.get(f"/fhir/r4/{kind}/{pk}")
        assert response.status_code == 404, (kind, pk)
        return response.content.replace(str(pk).encode(), b"<id>")

    never = uuid.uuid4()
    for kind, pk in (
        ("Appointment", there),
        ("Appointment", far),
        ("Schedule", at_west.pk),
        ("Schedule", ny_doctor.pk),
    ):
        assert not_found(kind, pk) == not_found(kind, never), (kind, pk)
    assert fhir_ids(api, f"/fhir/r4/Appointment?patient=Patient/{patient.pk}") == [here]
    assert fhir_ids(api, f"/fhir/r4/Appointment?actor=Location/{west.pk}") == []
    assert fhir_ids(api, f"/fhir/r4/Slot?schedule=Schedule/{at_west.pk}&start=2026-03-03") == []
    assert fhir_ids(api, f"/fhir/r4/Schedule?actor=Location/{west.pk}") == []


# ============================================ Search parameters ==================================================


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/fhir/r4/Appointment?date=eb2026-03-03", "date"),
        ("/fhir/r4/Appointment?date=ap2026-03-03", "date"),
        ("/fhir/r4/Appointment?date=GE2026-03-03", "date"),
        ("/fhir/r4/Appointment?date=2026-03", "date"),
        ("/fhir/r4/Appointment?date=2026", "date"),
        ("/fhir/r4/Appointment?date=2026-03-03T24:00:00Z", "date"),
        ("/fhir/r4/Appointment?date=2026-03-03T10:00:00%2B01", "date"),
        ("/fhir/r4/Slot?start=sa2026-03-03", "start"),
        ("/fhir/r4/Slot?start=ne2026-03-03", "start"),
        ("/fhir/r4/Slot?start=2026-03-03T10:00:00", "start"),
        ("/fhir/r4/Slot?start=lt2026-03-02T08:00:00Z", "start"),  # before now, with the start left to now: empty
        ("/fhir/r4/Appointment?_count=-1", "_count"),
        ("/fhir/r4/Appointment?_count=99999999999999999999", "_count"),
        ("/fhir/r4/Appointment?_count=1.5", "_count"),
        ("/fhir/r4/Appointment?_count=1e2", "_count"),
        ("/fhir/r4/Appointment?_count=%2B5", "_count"),
        ("/fhir/r4/Appointment?_count=%205", "_count"),
        ("/fhir/r4/Schedule?_count=0", "_count"),
        ("/fhir/r4/Appointment?page=-1", "page"),
        ("/fhir/r4/Appointment?page=1.0", "page"),
        ("/fhir/r4/Schedule?active=TRUE", "active"),
        ("/fhir/r4/Schedule?_id=Appointment/x", "_id"),
        ("/fhir/r4/Appointment?_summary=count", "_summary"),
        ("/fhir/r4/Appointment?_total=accurate", "_total"),
        ("/fhir/r4/Appointment?_elements=id", "_elements"),
        ("/fhir/r4/Appointment?Status=booked", "Status"),
        ("/fhir/r4/Appointment?status:missing=true", "status:missing"),
        ("/fhir/r4/Slot?schedule:Schedule=x", "schedule:Schedule"),
    ],
)
def test_search_values_this_server_does_not_read_are_a_400_naming_them(api, practitioner, path, parameter):
    """docs/fhir.md: 'Dates take the prefixes ge, gt, lt, le, eq'; 'a time without an offset or an empty date range
    is a 400'; '_count is 1 to 200'; 'an unknown search parameter (modifiers ... included) ... is a 400';
    'expression names the search parameter at fault'."""
    issue = fhir_outcome(api.get(path), 400)
    assert issue["code"] == "invalid" and issue["expression"] == [parameter], issue
    assert issue["details"]["coding"] == [{"system": "urn:clinic-api:problem", "code": "invalid_search"}]


def test_count_bounds_are_inclusive_and_pages_hold_that_many(api, practitioner):
    """docs/fhir.md: '_count is 1 to 200 (default 50)'. Botox starts of one working day (35): _count=1 gives one
    per page, 200 all of them, no _count 35 (under 50)."""
    path = "/fhir/r4/Slot?service-type=botox&status=free&start=2026-03-03"
    for count, on_page in (("1", 1), ("200", 35), (None, 35), ("007", 7)):
        body, slots = fhir_search(api, path + (f"&_count={count}" if count else ""))
        assert (body["total"], len(slots)) == (35, on_page), count


def test_count_with_leading_zeros_is_read_as_its_number(api, practitioner):
    """docs/fhir.md: '_count is 1 to 200'. `_count=005` already reads as 5; ten characters of it must too. Failed
    before: a 400 (the first six digits were bounded); fixed in fhir.search.count (leading zeros dropped, the
    length of what is left bounded, so no huge int is built)."""
    path = "/fhir/r4/Slot?service-type=botox&status=free&start=2026-03-03&_count="
    assert len(fhir_search(api, path + "005")[1]) == 5
    assert len(fhir_search(api, path + "0000000005")[1]) == 5
    assert fhir_outcome(api.get(path + "0000000201"), 400)["expression"] == ["_count"]


def test_a_repeated_id_must_match_each_time(api, patient, practitioner, clinic):
    """docs/fhir.md: 'In a token parameter ... a repeated parameter must match each time (AND)'; the
    CapabilityStatement types `_id` as token. No resource has two ids. Failed before: the repeats were joined (OR);
    fixed in fhir.views (each repeat of `_id` is its own filter)."""
    first = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    second = api_book(api, patient, "2026-03-04T10:00:00+00:00", procedure="filler")["id"]
    other = PractitionerFactory(clinic=clinic, name="Dr Bea")
    assert fhir_ids(api, f"/fhir/r4/Appointment?_id={first},{second}") == [first, second]  # alternatives: OR
    assert fhir_ids(api, f"/fhir/r4/Appointment?_id={first}&_id={first}") == [first]
    assert fhir_ids(api, f"/fhir/r4/Appointment?_id={first}&_id={second}") == []
    assert fhir_ids(api, f"/fhir/r4/Schedule?_id={practitioner.pk}&_id={other.pk}") == []


def test_a_repeated_schedule_must_match_each_time(api, practitioner, clinic):
    """docs/fhir.md: a repeated parameter must match each time (AND), as Appointment's references do; no Slot is in
    two schedules. Failed before: the repeats were joined (OR); fixed in fhir.views.SlotSearchView."""
    other = PractitionerFactory(clinic=clinic, name="Dr Bea")
    both = f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk},Schedule/{other.pk}&start=2026-03-03"
    assert {s["schedule"]["reference"] for s in fhir_search(api, both)[1]} == {
        f"Schedule/{practitioner.pk}",
        f"Schedule/{other.pk}",
    }
    assert fhir_ids(api, f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk}&schedule=Schedule/{other.pk}") == []
    alone = fhir_ids(api, f"/fhir/r4/Slot?schedule=Schedule/{practitioner.pk}&schedule=Schedule/{practitioner.pk}")
    assert alone and all(slot.startswith(str(practitioner.pk)) for slot in alone)


def test_a_token_may_name_its_system(api, patient, practitioner):
    """R4 search token: `[system]|[code]`. docs/fhir.md: the system this server uses (or none, `|code`) reads as
    the code; another system's code matches nothing. Failed before: a 400; fixed in fhir.search._code."""
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    for query in (
        "service-type=urn:clinic-scheduling:procedure|botox",
        "service-type=|botox",
        "status=http://hl7.org/fhir/appointmentstatus|booked",
    ):
        assert fhir_ids(api, f"/fhir/r4/Appointment?{quote(query, safe='=')}") == [made], query
    assert fhir_ids(api, f"/fhir/r4/Schedule?{quote('service-type=urn:clinic-scheduling:procedure|botox', safe='=')}")
    assert fhir_ids(api, f"/fhir/r4/Appointment?{quote('service-type=http://snomed.info/sct|botox', safe='=')}") == []
    assert fhir_outcome(
        api.get("/fhir/r4/Appointment?" + quote("status=http://hl7.org/fhir/appointmentstatus|", safe="=")), 400
    )


def test_a_reference_may_be_the_absolute_url_the_server_gave(api, patient, practitioner):
    """R4 search reference: an absolute URL on the server's own base is the same reference as `Type/id`; one on
    another server matches nothing here. Failed before: a 400; fixed in fhir.search.reference_id (base=)."""
    made = api_book(api, patient, "2026-03-03T10:00:00+00:00")["id"]
    body, _ = fhir_search(api, "/fhir/r4/Schedule")
    full_url = body["entry"][0]["fullUrl"]
    assert full_url.endswith(f"/fhir/r4/Schedule/{practitioner.pk}")
    slots = fhir_ids(api, f"/fhir/r4/Slot?schedule={quote(full_url, safe='')}&start=2026-03-03")
    assert slots
    practitioner_url = full_url.replace("/Schedule/", "/Practitioner/")
    assert fhir_ids(api, f"/fhir/r4/Appointment?practitioner={quote(practitioner_url, safe='')}") == [made]
    elsewhere = practitioner_url.replace("http://testserver/", "http://other.example/")
    assert fhir_ids(api, f"/fhir/r4/Appointment?practitioner={quote(elsewhere, safe='')}") == []


def test_slot_start_prefixes_bound_the_slot_start(api, patient, practitioner):
    """docs/fhir.md Slot: `start` (the window); 'Dates take the prefixes ge, gt, lt, le, eq (gt and lt leave the
    instant or day named out)'. A Slot is found by its `start`: searching gt an instant never gives a Slot that
    starts at it, and tiling a day into two windows lists each Slot once. Failed before: busy Slots were found by
    overlap; fixed in fhir.slots (busy and free Slots are found by their start, in [start, end) of the window)."""
    api_book(api, patient, "2026-03-03T10:00:00+00:00")  # 10:00-10:30
    after = fhir_search(api, "/fhir/r4/Slot?status=busy&start=gt2026-03-03T10:00:00Z&start=lt2026-03-04")[1]
    assert all(s["start"] > "2026-03-03T10:00:00+00:00" for s in after), [s["start"] for s in after]
    first = fhir_ids(api, "/fhir/r4/Slot?status=busy&start=ge2026-03-03T00:00:00Z&start=lt2026-03-03T10:15:00Z")
    second = fhir_ids(api, "/fhir/r4/Slot?status=busy&start=ge2026-03-03T10:15:00Z&start=lt2026-03-04T00:00:00Z")
    assert len(first) == 1 and not set(first) & set(second), (first, second)
    free = "/fhir/r4/Slot?status=free&service-type=botox&start=ge2026-03-03T00:00:00Z&start="
    morning, day = fhir_ids(api, free + "lt2026-03-03T10:40:00Z"), fhir_ids(api, free + "lt2026-03-04T00:00:00Z")
    later = fhir_ids(
        api, "/fhir/r4/Slot?status=free&service-type=botox&start=ge2026-03-03T10:40:00Z&start=lt2026-03-04"
    )
    assert morning and later and set(morning) | set(later) == set(day) and not set(morning) & set(later)
    between = "start=gt2026-03-03T10:30:00Z&start=lt2026-03-03T10:45:00Z"  # no grid point strictly inside
    assert fhir_ids(api, f"/fhir/r4/Slot?status=free&service-type=botox&{between}") == []


def test_slot_ids_are_unique_in_a_bundle_when_time_off_is_entered_twice(api, practitioner):
    """docs/fhir.md: 'A Slot's id is stable ({practitioner}.{start UTC yyyymmddHHMM}.{minutes}.{status})';
    'time off is busy-unavailable'; R4 Bundle bdl-7: 'FullUrl must be unique in a bundle'. Failed before: two Slots
    with one id; fixed in fhir.slots._time_off (entries that overlap or touch are one Slot)."""
    for reason in ("sick", "training"):
        TimeOff.objects.create(
            practitioner=practitioner,
            start_at=datetime(2026, 3, 3, 12, tzinfo=UTC),
            end_at=datetime(2026, 3, 3, 14, tzinfo=UTC),
            reason=reason,
        )
    body, slots = fhir_search(api, "/fhir/r4/Slot?status=busy-unavailable&start=2026-03-03")
    assert slots and all(s["start"] == "2026-03-03T12:00:00+00:00" for s in slots)
    full_urls = [e["fullUrl"] for e in body["entry"]]
    assert len(full_urls) == len(set(full_urls)) == 1, full_urls


def test_slot_ids_follow_the_documented_pattern(api, patient, practitioner):
    """docs/fhir.md: 'A Slot's id is stable ({practitioner}.{start UTC yyyymmddHHMM}.{minutes}.{status}), cut to
    R4's 64 characters'. Failed before, as a question: the cut was not documented; the ids are kept as they were
    (clients hold them) and docs/fhir.md now says how the cut shortens busy-tentative and busy-unavailable."""
    held = PatientFactory(clinic=practitioner.clinic)
    PatientConditionFactory(patient=held, condition_id="eczema", status="history")
    api_book(api, held, "2026-03-03T10:00:00+00:00", procedure="microneedling")
    TimeOff.objects.create(
        practitioner=practitioner,
        start_at=datetime(2026, 3, 3, 12, tzinfo=UTC),
        end_at=datetime(2026, 3, 3, 14, tzinfo=UTC),
    )
    _, slots = fhir_search(api, "/fhir/r4/Slot?start=2026-03-03")
    assert {s["status"] for s in slots} == {"free", "busy-tentative", "busy-unavailable"}
    for slot in slots:
        minutes = (datetime.fromisoformat(slot["end"]) - datetime.fromisoformat(slot["start"])).seconds // 60
        start = datetime.fromisoformat(slot["start"]).astimezone(UTC)
        assert slot["id"] == f"{practitioner.pk}.{start:%Y%m%d%H%M}.{minutes}.{slot['status']}"[:64], slot["id"]
    cut = {s["status"]: s["id"].rsplit(".", 1)[1] for s in slots}
    assert cut == {"free": "free", "busy-tentative": "busy-tentat", "busy-unavailable": "busy-unava"}, cut


# ============================================ Time zones ==========================================================


def test_new_york_fall_back_night_searches_by_the_instant(catalogue, newyork):
    """docs/fhir.md: 'Times carry an offset'; Appointment `start` 'in the clinic's offset'; Slot ids
    '{practitioner}.{start UTC yyyymmddHHMM}.{minutes}.{status}' are stable. On Sunday 1 November 2026 New York
    reads 01:30 twice: 01:30-04:00 (05:30Z) and 01:30-05:00 (06:30Z). Searched with either offset, each is found
    alone; their busy Slots have distinct ids and their own offsets."""
    doctor = worker(newyork, "Dr Night", {6: (time(0), time(6))})
    client = http(new_api_client(newyork)[1])
    first_patient, second_patient = PatientFactory(clinic=newyork), PatientFactory(clinic=newyork)
    early = api_book(client, first_patient, "2026-11-01T01:30:00-04:00")["id"]
    late = api_book(client, second_patient, "2026-11-01T01:30:00-05:00")["id"]
    read = {r["id"]: r for r in fhir_search(client, "/fhir/r4/Appointment?date=2026-11-01")[1]}
    assert (read[early]["start"], read[late]["start"]) == ("2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00")
    assert (read[early]["end"], read[late]["end"]) == ("2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00")
    assert fhir_ids(client, "/fhir/r4/Appointment?date=" + quote("2026-11-01T01:30:00-04:00")) == [early]
    assert fhir_ids(client, "/fhir/r4/Appointment?date=" + quote("2026-11-01T01:30:00-05:00")) == [late]
    assert fhir_ids(client, "/fhir/r4/Appointment?date=gt" + quote("2026-11-01T01:30:00-04:00")) == [late]
    with time_machine.travel(datetime(2026, 10, 30, 12, tzinfo=UTC), tick=True):
        window = "start=ge" + quote("2026-11-01T00:00:00-04:00") + "&start=lt" + quote("2026-11-01T06:00:00-05:00")
        _, slots = fhir_search(client, f"/fhir/r4/Slot?schedule=Schedule/{doctor.pk}&{window}")
    shape = [(s["status"], s["start"], s["end"]) for s in slots]
    assert shape == [
        ("free", "2026-11-01T00:00:00-04:00", "2026-11-01T01:30:00-04:00"),
        ("busy", "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00"),
        ("free", "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00"),
        ("busy", "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"),
        ("free", "2026-11-01T02:00:00-05:00", "2026-11-01T06:00:00-05:00"),
    ]
    busy = [s["id"] for s in slots if s["status"] == "busy"]
    assert busy == [f"{doctor.pk}.202611010530.30.busy", f"{doctor.pk}.202611010630.30.busy"]


def test_london_spring_forward_night_takes_explicit_offsets(catalogue, clinic, patient):
    """domain.md: 'a local time that does not exist (spring forward) ... is refused ... unless the caller gives an
    explicit offset'; docs/fhir.md: times carry an offset. On Sunday 29 March 2026 London skips 01:00-02:00. A
    search at the skipped 01:30+01:00 (00:30Z) is a plain instant; the free stretch runs across the change."""
    doctor = worker(clinic, "Dr Spring", {6: (time(0), time(6))})
    client = http(new_api_client(clinic)[1])
    made = api_book(client, patient, "2026-03-29T00:30:00+00:00", practitioner=str(doctor.pk))["id"]
    assert fhir_ids(client, "/fhir/r4/Appointment?date=" + quote("2026-03-29T01:30:00+01:00")) == [made]
    assert fhir_ids(client, "/fhir/r4/Appointment?date=lt" + quote("2026-03-29T01:30:00+01:00")) == []
    window = "start=ge" + quote("2026-03-29T00:00:00+00:00") + "&start=lt" + quote("2026-03-29T06:00:00+01:00")
    with time_machine.travel(datetime(2026, 3, 27, 12, tzinfo=UTC), tick=True):
        _, slots = fhir_search(client, f"/fhir/r4/Slot?schedule=Schedule/{doctor.pk}&{window}")
    assert [(s["status"], s["start"], s["end"]) for s in slots] == [
        ("free", "2026-03-29T00:00:00+00:00", "2026-03-29T00:30:00+00:00"),
        ("busy", "2026-03-29T00:30:00+00:00", "2026-03-29T02:00:00+01:00"),
        ("free", "2026-03-29T02:00:00+01:00", "2026-03-29T06:00:00+01:00"),
    ]


def test_free_time_across_a_local_midnight_in_sydney(catalogue):
    """docs/fhir.md: free Slots are 'the free stretches of working time'; 'a bare date (2026-03-03) is that whole UTC
    day'. Sydney (+11:00 in March) works 09:00-18:00 local: the UTC day 3 March holds 11:00-18:00 of the 3rd and
    09:00-11:00 of the 4th, local; each stretch ends where the window does, and service-type starts run to the
    window's last grid point."""
    sydney = ClinicFactory(code="sydney", timezone="Australia/Sydney")
    doctor = PractitionerFactory(clinic=sydney, name="Dr Harbour")
    client = http(new_api_client(sydney)[1])
    _, slots = fhir_search(client, f"/fhir/r4/Slot?schedule={doctor.pk}&status=free&start=2026-03-03")
    assert [(s["start"], s["end"]) for s in slots] == [
        ("2026-03-03T11:00:00+11:00", "2026-03-03T18:00:00+11:00"),
        ("2026-03-04T09:00:00+11:00", "2026-03-04T11:00:00+11:00"),
    ]
    _, starts = fhir_search(
        client, f"/fhir/r4/Slot?schedule={doctor.pk}&status=free&service-type=botox&start=2026-03-03&_count=200"
    )
    assert starts[-1]["start"] == "2026-03-04T10:45:00+11:00" and starts[-1]["end"] == "2026-03-04T11:15:00+11:00"
    assert len(starts) == 27 + 8  # 11:00-17:30 every 15 minutes, then 09:00-10:45


# ============================================ Status map ==========================================================


def test_every_r4_status_searches_exactly_the_appointments_that_show_it(api, clinical_api, clinic, practitioner):
    """docs/fhir.md status map (pending_clearance and needs_review → pending, confirmed → booked, checked in →
    arrived, completed → fulfilled, cancelled, no_show → noshow); 'A search for status=pending finds both;
    status=arrived finds the checked-in ones and status=booked the others; the other R4 codes ... are accepted and
    match nothing'. For each R4 code the search gives exactly the appointments whose resource carries it; a booking
    checked in while still pending clearance stays pending, and a checked-in one once completed is fulfilled."""
    people = [PatientFactory(clinic=clinic) for _ in range(8)]
    PatientConditionFactory(patient=people[1], condition_id="eczema", status="history")
    PatientConditionFactory(patient=people[6], condition_id="eczema", status="history")
    at = "2026-03-02T{:02d}:00:00+00:00".format
    plain = api_book(api, people[0], at(11))["id"]
    held = api_book(api, people[1], at(12), procedure="microneedling")["id"]
    flagged = api_book(api, people[2], "2026-03-10T10:00:00+00:00", procedure="microneedling")["id"]
    reported = api.post(
        f"/api/v1/patients/{people[2].pk}/procedures/",
        {"procedure": "botox", "performed_at": "2026-03-01T10:00:00+00:00"},
        format="json",
    )
    assert reported.status_code == 201, reported.content
    arrived = api_book(api, people[3], at(13))["id"]
    done = api_book(api, people[4], at(14))["id"]
    gone = api_book(api, people[5], at(15))["id"]
    api.post(f"/api/v1/appointments/{gone}/cancel/", {}, format="json")
    held_here = api_book(api, people[6], at(16), procedure="microneedling")["id"]
    missed = api_book(api, people[7], at(17))["id"]
    desk = Actor(label="front desk")
    for pk, moment in ((arrived, 12), (done, 13), (held_here, 15)):
        appointment_check_in(
            appointment=Appointment.objects.get(pk=pk), actor=desk, now=datetime(2026, 3, 2, moment, 50, tzinfo=UTC)
        )
    with time_machine.travel(datetime(2026, 3, 2, 17, 45, tzinfo=UTC)):
        assert clinical_api.post(f"/api/v1/appointments/{done}/complete/", {}, format="json").status_code == 200
        assert clinical_api.post(f"/api/v1/appointments/{missed}/no-show/", {}, format="json").status_code == 200

    _, everything = fhir_search(api, "/fhir/r4/Appointment?_count=200")
    shown = {r["id"]: r["status"] for r in everything}
    assert shown == {
        plain: "booked",
        held: "pending",
        flagged: "pending",
        arrived: "arrived",
        done: "fulfilled",
        gone: "cancelled",
        held_here: "pending",
        missed: "noshow",
    }
    assert Appointment.objects.get(pk=flagged).status == AppointmentStatus.NEEDS_REVIEW
    for code in R4_APPOINTMENT_STATUSES:
        found = set(fhir_ids(api, f"/fhir/r4/Appointment?status={code}"))
        assert found == {pk for pk, status in shown.items() if status == code}, code
    assert set(fhir_ids(api, "/fhir/r4/Appointment?status=booked,arrived")) == {plain, arrived}
    assert set(fhir_ids(api, "/fhir/r4/Appointment?status=booked,arrived&status=arrived")) == {arrived}


# ============================================ Merged patients =====================================================


def test_a_merged_patients_appointments_answer_under_the_survivor(api, clinical_api, clinic, west, practitioner):
    """docs/organisations.md: on a merge 'appointments ... move to the survivor' and the other record 'leaves every
    list, search'; docs/api.md: 'Tombstones are in no list, search or body'. Through FHIR: the moved appointment's
    participant is the survivor, the tombstone's id appears in no answer, a search by it finds nothing, a search
    by the survivor finds both appointments; a West appointment stays hidden from the London-only key."""
    survivor = PatientFactory(clinic=clinic, first_name="Olivia", last_name="Bennett")
    duplicate = PatientFactory(clinic=west, first_name="Olivia", last_name="Benett")
    dr_west = PractitionerFactory(clinic=west, name="Dr West")
    kept = api_book(api, survivor, "2026-03-03T10:00:00+00:00")["id"]
    moved = api_book(api, duplicate, "2026-03-05T10:00:00+00:00", procedure="filler")["id"]
    at_west = api_book(clinical_api, duplicate, "2026-03-06T10:00:00+00:00", practitioner=str(dr_west.pk))["id"]
    merged = clinical_api.post(f"/api/v1/patients/{duplicate.pk}/merge/", {"into": str(survivor.pk)}, format="json")
    assert merged.status_code == 200, merged.content

    body, resources = fhir_search(api, "/fhir/r4/Appointment?_count=200")
    assert str(duplicate.pk) not in json.dumps(body)
    by_id = {r["id"]: r for r in resources}
    assert set(by_id) == {kept, moved}
    assert by_id[moved]["participant"][0]["actor"]["reference"] == f"Patient/{survivor.pk}"
    assert fhir_ids(api, f"/fhir/r4/Appointment?patient=Patient/{duplicate.pk}") == []
    said, _ = fhir_search(api, f"/fhir/r4/Appointment?patient=Patient/{duplicate.pk}")
    assert [e["search"]["mode"] for e in said["entry"]] == ["outcome"]  # where the patient went (docs/fhir.md)
    assert f"Patient/{survivor.pk}" in said["entry"][0]["resource"]["issue"][0]["diagnostics"]
    assert fhir_ids(api, f"/fhir/r4/Appointment?actor=Patient/{duplicate.pk}") == []
    assert fhir_ids(api, f"/fhir/r4/Appointment?patient=Patient/{survivor.pk}") == [kept, moved]
    fhir_outcome(api.get(f"/fhir/r4/Appointment/{at_west}"), 404)
    assert fhir_ids(clinical_api, f"/fhir/r4/Appointment?patient={survivor.pk}") == [kept, moved, at_west]


# ============================================ Paging ==============================================================


def test_paging_links_round_trip_keep_every_filter_and_stay_on_this_server(api, clinic, practitioner):
    """docs/fhir.md Paging: 'link's self, next (while more remain) and previous'; 'follow next rather than building
    page addresses'. Filters with offsets ('+01:00'), a repeated parameter and `_format` ride along; `self` gives
    the same page again, `previous` the page before; the links name this server whatever X-Forwarded-Host says;
    the walk ends, each appointment seen once."""
    people = [PatientFactory(clinic=clinic) for _ in range(5)]
    made = [api_book(api, who, f"2026-03-{3 + i:02d}T10:00:00+00:00")["id"] for i, who in enumerate(people)]
    query = (
        "date=ge"
        + quote("2026-03-03T00:00:00+01:00", safe="")
        + "&date=lt"
        + quote("2026-03-31T00:00:00-04:00")
        + "&status=booked,pending&status=booked&_format=json&_count=2"
    )
    path = f"/fhir/r4/Appointment?{query}"
    body, first = fhir_search(api, path, HTTP_X_FORWARDED_HOST="evil.example")
    pages, seen = [body], [r["id"] for r in first]
    while "next" in links(body):
        url = links(body)["next"]
        assert urlsplit(url).netloc == "testserver" and urlsplit(url).path == "/fhir/r4/Appointment", url
        kept = [(k, v) for k, v in parse_qsl(urlsplit(url).query) if k != "page"]
        assert kept == [(k, v) for k, v in parse_qsl(query)], url
        body, more = fhir_search(api, relative(url), HTTP_X_FORWARDED_HOST="evil.example")
        pages.append(body)
        seen += [r["id"] for r in more]
        assert len(pages) <= 3
    assert seen == made and [p["total"] for p in pages] == [5, 5, 5]
    for page in pages:
        again, _ = fhir_search(api, relative(links(page)["self"]))
        assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in page["entry"]]
        assert urlsplit(links(page)["self"]).netloc == "testserver"
    back, _ = fhir_search(api, relative(links(pages[2])["previous"]))
    assert [e["fullUrl"] for e in back["entry"]] == [e["fullUrl"] for e in pages[1]["entry"]]
    assert "previous" not in links(pages[0]) and "next" not in links(pages[2])
    assert all(e["fullUrl"].startswith("http://testserver/fhir/r4/Appointment/") for p in pages for e in p["entry"])


def test_slot_paging_of_a_time_window_keeps_it(api, practitioner):
    """docs/fhir.md: Slot `start` 'default now to 7 days on'; paging 'follow next'. The next link of a Slot search
    with only `start=ge` keeps that window (its default end is computed from the same start each time) and the
    pages join up without a gap or a repeat."""
    path = "/fhir/r4/Slot?service-type=filler&status=free&start=ge2026-03-07T16:00:00Z&_count=7"
    seen, body = [], None
    while True:
        body, slots = fhir_search(api, path)
        seen += [s["id"] for s in slots]
        if "next" not in links(body):
            break
        path = relative(links(body)["next"])
    assert len(seen) == len(set(seen)) == body["total"]
    starts = [s.split(".")[1] for s in seen]
    assert starts == sorted(starts) and starts[0] == "202603071600"
    assert starts[-1] < "202603141600"  # seven days on from the start asked for
