"""Query strings and headers are as strict as bodies, and answer what the schema says: pages within their limits,
no empty or repeated filters, booleans that are true or false, over-long addresses and headers as problems."""

import pytest

from tests.api.conftest import http, new_api_client, problem_of
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


# --- Pages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, field",
    [
        ("page_size=201", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=-1", "page_size"),
        ("page_size=1.5", "page_size"),
        ("page=0", "page"),
        ("page=last", "page"),
        ("page=", "page"),
        ("page=1&page=2", "page"),
        ("page_size=5&page_size=6", "page_size"),
    ],
)
def test_page_and_page_size_outside_their_documented_limits_are_400(api, query, field):
    body = problem_of(api.get(f"/api/v1/procedures/?{query}"), 400)
    assert list(body["errors"]) == [field]
    assert body["code"] == "invalid_input"


def test_page_size_200_is_the_largest(api):
    assert api.get("/api/v1/procedures/?page_size=200").status_code == 200


def test_a_page_past_the_last_has_its_own_code(api):
    # Well formed, but there is no such page (yet): not a shape error.
    body = problem_of(api.get("/api/v1/procedures/?page=99"), 400)
    assert body["code"] == "page_out_of_range"
    assert body["errors"] == {"page": ["That page is past the last one."]}
    assert problem_of(api.get("/api/v1/procedures/?page=" + "9" * 30), 400)["code"] == "page_out_of_range"


# --- Filters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["status=", "start_before=", "start_after=", "clinic=", "procedure=", "patient=", "practitioner="]
)
def test_an_empty_appointment_filter_is_refused_not_ignored(api, query):
    body = problem_of(api.get(f"/api/v1/appointments/?{query}"), 400)
    name = query.rstrip("=")
    assert "Give a value, or leave the parameter out." in body["errors"][name]


@pytest.mark.parametrize(
    "path, query",
    [("patients", "search="), ("patients", "clinic="), ("practitioners", "procedure="), ("procedures", "bookable=")],
)
def test_an_empty_filter_is_refused_on_every_list(api, path, query):
    body = problem_of(api.get(f"/api/v1/{path}/?{query}"), 400)
    assert body["errors"] == {query.rstrip("="): ["Give a value, or leave the parameter out."]}


@pytest.mark.parametrize("value", ["0.82", "null", "1", "0", "yes", "True"])
def test_bookable_is_true_or_false_and_nothing_else(api, value):
    body = problem_of(api.get(f"/api/v1/procedures/?bookable={value}"), 400)
    assert body["errors"] == {"bookable": ["Give true or false."]}


def test_bookable_filters(api):
    from clinic.models import ProcedureType

    assert (
        api.get("/api/v1/procedures/?bookable=true").json()["count"]
        == ProcedureType.objects.filter(bookable=True).count()
    )
    assert (
        api.get("/api/v1/procedures/?bookable=false").json()["count"]
        == ProcedureType.objects.filter(bookable=False).count()
    )


@pytest.mark.parametrize(
    "path, query, name",
    [
        ("procedures", "bookable=true&bookable=false", "bookable"),
        ("appointments", "clinic=london&clinic=newyork", "clinic"),
        ("appointments", "start_after=2026-03-01T00:00:00Z&start_after=2026-03-02T00:00:00Z", "start_after"),
        ("patients", "search=a&search=b", "search"),
    ],
)
def test_a_single_valued_parameter_given_twice_is_refused(api, path, query, name):
    body = problem_of(api.get(f"/api/v1/{path}/?{query}"), 400)
    assert body["errors"][name] == ["Give this parameter once."]


def test_status_may_be_repeated(api):
    assert api.get("/api/v1/appointments/?status=confirmed&status=cancelled").status_code == 200


def test_availability_refuses_repeated_and_empty_parameters(api, patient):
    body = problem_of(api.get(f"/api/v1/availability/?patient={patient.pk}&patient={patient.pk}&procedure=botox"), 400)
    assert body["errors"] == {"patient": ["Give this parameter once."]}
    body = problem_of(api.get(f"/api/v1/availability/?patient={patient.pk}&procedure=botox&area="), 400)
    assert body["errors"] == {"area": ["Give a value, or leave the parameter out."]}


def test_an_unknown_id_in_a_filter_says_what_is_unknown(api, other_patient, other_practitioner):
    for name, record in (("patient", other_patient), ("practitioner", other_practitioner)):
        for value in (str(record.pk), "00000000-0000-0000-0000-000000000000", "not-an-id"):
            body = problem_of(api.get(f"/api/v1/appointments/?{name}={value}"), 400)
            assert body["code"] == f"unknown_{name}"
            assert body["errors"] == {name: [f"There is no such {name}."]}
    assert problem_of(api.get("/api/v1/appointments/?clinic=nowhere"), 400)["code"] == "unknown_clinic"


def test_an_id_filter_finds_the_callers_own(api, patient, practitioner):
    assert api.get(f"/api/v1/appointments/?patient={patient.pk}").status_code == 200
    assert api.get(f"/api/v1/appointments/?practitioner={practitioner.pk}").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/appointments/", "/api/v1/practitioners/"])
def test_an_unknown_procedure_code_in_a_filter_is_refused_naming_the_codes(api, practitioner, path):
    body = problem_of(api.get(f"{path}?procedure=botx"), 400)
    assert body["code"] == "unknown_procedure"
    [message] = body["errors"]["procedure"]
    assert "'botx'" in message and "botox" in message and "plasma_pen" in message


def test_a_procedure_filter_takes_a_catalogue_code(api, practitioner):
    assert [p["name"] for p in api.get("/api/v1/practitioners/?procedure=botox").json()["results"]] == ["Dr Ada"]
    assert api.get("/api/v1/appointments/?procedure=filler").json()["count"] == 0  # none booked: empty, not an error


def test_search_reads_a_national_number_in_the_callers_clinics_countries(clinic, other_clinic):
    london = PatientFactory(clinic=clinic, first_name="Lon", phone="+447911123456")
    PatientFactory(clinic=other_clinic, first_name="Nyc", phone="+12125550123")
    both = http(new_api_client(clinic, other_clinic)[1])

    def found(query):
        return sorted(p["first_name"] for p in both.get("/api/v1/patients/", {"search": query}).json()["results"])

    assert found("07911 123456") == ["Lon"]  # as dialled in Britain
    assert found("(212) 555-0123") == ["Nyc"]  # as dialled in the United States
    london_only = http(new_api_client(clinic)[1])
    assert london_only.get("/api/v1/patients/", {"search": "07911 123456"}).json()["results"][0]["id"] == str(london.pk)


# --- Idempotency-Key ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [" leading", "trailing ", "tab\tinside", "x" * 256, "caf\u00e9"])
def test_an_idempotency_key_outside_its_documented_pattern_is_400(api, key):
    response = api.post(
        "/api/v1/patients/", {"first_name": "A", "last_name": "B"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert problem_of(response, 400)["code"] == "invalid_idempotency_key"


def test_an_idempotency_key_with_inner_spaces_is_fine(api):
    response = api.post(
        "/api/v1/patients/",
        {"first_name": "A", "last_name": "B"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order 42 / try 1",
    )
    assert response.status_code == 201, response.content


# --- Sizes the application can see --------------------------------------------------------------------------


def test_an_over_long_address_is_a_414_problem(api):
    body = problem_of(api.get("/api/v1/patients/", {"search": "x" * 4000}), 414)
    assert body["code"] == "uri_too_long"
    assert api.get("/api/v1/patients/", {"search": "x" * 100}).status_code == 200


def test_an_over_long_header_is_a_431_problem_before_the_key_is_read(api):
    body = problem_of(api.get("/api/v1/clinics/", HTTP_X_NOTE="x" * 8001), 431)
    assert body["code"] == "request_header_fields_too_large"
    assert api.get("/api/v1/clinics/", HTTP_X_NOTE="x" * 8000).status_code == 200
