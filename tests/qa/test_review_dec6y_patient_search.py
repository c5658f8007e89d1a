"""Review probe (6 December, y): the receptionist's patient search as typed at a real desk.

The patients page (`/clinic/<code>/patients/?q=`, where the Today page's search box sends its query), the
calendar's "find the patient" step (`calendar/book/?q=`) and the API's `/api/v1/patients/?search=` all read
`clinic.selectors.patient_search`. docs/frontdesk.md promises name, e-mail, phone in any format (`07911 123456`,
`+44 7911…`, `0044…`, a leading part) and the date of birth as typed (day first; month first at a US clinic);
docs/api.md and docs/organisations.md promise tombstones in no search. Probed here: names (case, order, spaces,
hyphens, accents, apostrophes), phones in British, American and foreign forms, dates, e-mails with digits,
LIKE wildcards and control characters, the organisation's walls, merged records, the caps of 50 and 20 and
what one search reads.
"""

import re
from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from clinic.merging import patient_merge
from clinic.models import Patient, StaffMembership, StaffRole
from clinic.selectors import patient_search
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory
from tests.frontdesk.conftest import url
from tests.qa.helpers import squash

pytestmark = pytest.mark.django_db

ON_SQLITE = connection.vendor == "sqlite"
PATIENT_LINK = re.compile(r"/patients/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/")


# --- The world: a London clinic with a Paris sister site, and a New York clinic of another organisation ------------


@pytest.fixture
def london(catalogue):
    return ClinicFactory(code="dec6y-london", name="London Clinic", timezone="Europe/London")


@pytest.fixture
def paris(london):
    return ClinicFactory(
        code="dec6y-paris", name="Paris Clinic", timezone="Europe/Paris", organisation=london.organisation
    )


@pytest.fixture
def newyork(catalogue):
    return ClinicFactory(code="dec6y-ny", name="New York Clinic", timezone="America/New_York")


def desk_for(*clinics, username: str) -> Client:
    """A signed-in receptionist granted each of `clinics` one by one."""
    user = get_user_model().objects.create_user(username=username, password="pw-for-qa-only-123")
    for clinic in clinics:
        StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def desk(london):
    return desk_for(london, username="dec6y-desk")


@pytest.fixture
def olivia(london):
    return PatientFactory(
        clinic=london,
        first_name="Olivia",
        last_name="Bennett",
        email="olivia@example.com",
        phone="+447911123101",
        date_of_birth=date(1985, 6, 18),
    )


@pytest.fixture
def sam(london):
    """A second London patient whose details differ from Olivia's everywhere."""
    return PatientFactory(
        clinic=london,
        first_name="Sam",
        last_name="Clarke",
        email="sam@example.org",
        phone="+447922123999",
        date_of_birth=date(1990, 1, 1),
    )


def on_page(response) -> set[str]:
    """The ids of the patients a results page links to."""
    assert response.status_code == 200, response.status_code
    return set(PATIENT_LINK.findall(response.content.decode()))


def found_at_desk(client, clinic, query: str) -> set[str]:
    return on_page(client.get(url("patients", clinic), {"q": query}))


def found_in_dialog(client, clinic, query: str) -> set[str]:
    return on_page(client.get(url("calendar_book", clinic), {"q": query}, HTTP_HX_REQUEST="true"))


def found_by_api(platform, query: str) -> set[str]:
    response = platform.get("/api/v1/patients/", {"search": query})
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def ids(*patients) -> set[str]:
    return {str(p.pk) for p in patients}


# --- Names ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, who",
    [
        ("  OLIVIA   bennett  ", "olivia"),
        ("Bennett Olivia", "olivia"),
        ("OLIVIA@Example.COM", "olivia"),
        ("smith jones", "mary"),
        ("Mary Jane", "mary"),
        ("Smith-Jones", "mary"),
        ("o'brien", "siobhan"),
    ],
)
def test_names_in_any_case_order_spacing_or_with_their_hyphens_find_the_one_patient(
    desk, london, olivia, sam, query, who
):
    """Two words are first and last name in either order; a double-barrelled name is found by either part or whole."""
    people = {
        "olivia": olivia,
        "mary": PatientFactory(clinic=london, first_name="Mary-Jane", last_name="Smith-Jones", phone="+447933000001"),
        "siobhan": PatientFactory(clinic=london, first_name="Siobhan", last_name="O'Brien", phone="+447933000002"),
    }
    assert found_at_desk(desk, london, query) == ids(people[who])


@pytest.mark.parametrize("query, who", [("jose nunez", "jose"), ("Nunez", "jose"), ("O\u2019Brien", "siobhan")])
def test_accents_and_a_typographic_apostrophe_are_ignored_as_registration_ignores_them(desk, london, query, who):
    people = {
        "jose": PatientFactory(
            clinic=london, first_name="José", last_name="Núñez", email="jn@example.com", phone="+447933000003"
        ),
        "siobhan": PatientFactory(clinic=london, first_name="Siobhan", last_name="O'Brien", phone="+447933000004"),
    }
    assert found_at_desk(desk, london, query) == ids(people[who])


@pytest.mark.parametrize("query, who", [("élodie", "elodie"), ("ÖZTÜRK", "ozturk")])
def test_accented_letters_match_in_either_case_on_every_database(desk, london, query, who):
    people = {
        "elodie": PatientFactory(
            clinic=london, first_name="Élodie", last_name="Martin", email="e.martin@example.com", phone="+447933000005"
        ),
        "ozturk": PatientFactory(clinic=london, first_name="Emre", last_name="Öztürk", phone="+447933000006"),
    }
    assert found_at_desk(desk, london, query) == ids(people[who])


@pytest.mark.parametrize("query", ["%", "_", "%%", "Ben%", "B_nnett", "\\", "%\\%", "\x01", "Ben\x7fnett", "\x1b[2J"])
def test_wildcards_backslashes_and_control_characters_are_literal_on_every_surface(desk, london, olivia, sam, query):
    """A LIKE wildcard typed is a character like any other (no name holds one: nobody matches), and a control
    character is never a 500; the API reads the same text the same way."""
    platform = http(new_api_client(london)[1])

    assert found_at_desk(desk, london, query) == set()
    assert found_in_dialog(desk, london, query) == set()
    assert found_by_api(platform, query) == set()


# --- Phones ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["+44 (0)7911 12", "+44 (0) 7911 123", "0044 (0)7911 12"])
def test_a_leading_part_written_with_the_bracketed_trunk_zero_finds_the_patient(desk, london, olivia, sam, query):
    platform = http(new_api_client(london)[1])
    assert found_at_desk(desk, london, query) == ids(olivia)
    assert found_in_dialog(desk, london, query) == ids(olivia)
    assert found_by_api(platform, query) == ids(olivia)


def test_a_us_clinic_reads_american_numbers_and_month_first_dates(newyork):
    """At a US clinic: (212) and dotted formats, with or without the 1, a leading part, and 06/18/1985 as the 18th of
    June (18/06/1985 is no date there); the Today page's search box says so and sends the query to the patients page."""
    desk = desk_for(newyork, username="dec6y-ny-desk")
    nora = PatientFactory(
        clinic=newyork, first_name="Nora", last_name="Quinn", phone="+12125550199", date_of_birth=date(1985, 6, 18)
    )
    ned = PatientFactory(
        clinic=newyork, first_name="Ned", last_name="Stark", phone="+12125550100", date_of_birth=date(1985, 7, 6)
    )
    expected = {
        "(212) 555-0199": ids(nora),
        "212.555.0199": ids(nora),
        "1 (212) 555-0199": ids(nora),
        "+1 212-555-0199": ids(nora),
        "(212) 555": ids(nora, ned),
        "06/18/1985": ids(nora),
        "07/06/1985": ids(ned),
        "18/06/1985": set(),
    }

    assert {query: found_at_desk(desk, newyork, query) for query in expected} == expected
    assert found_in_dialog(desk, newyork, "(212) 555-0199") == ids(nora)
    today = squash(desk.get(url("today", newyork)))
    assert f'action="{url("patients", newyork)}"' in today and "e.g. 06/18/1985" in today


def test_a_sister_sites_patient_abroad_is_found_by_their_number_in_international_form(desk, london, paris):
    """The London desk sees the Paris site's patients (one record per organisation): +33, 0033 and a leading part
    find them; the Paris desk and a platform of both sites also read the French national form."""
    amelie = PatientFactory(clinic=paris, first_name="Amélie", last_name="Durand", phone="+33612345678")
    PatientFactory(clinic=paris, first_name="Luc", last_name="Roux", phone="+33698765432")
    paris_desk = desk_for(paris, username="dec6y-paris-desk")
    both_sites = http(new_api_client(london, paris)[1])

    for query in ("+33 6 12 34 56 78", "0033 6 12 34 56 78", "+33 6 12 3"):
        assert found_at_desk(desk, london, query) == ids(amelie), query
    assert found_at_desk(paris_desk, paris, "06 12 34 56 78") == ids(amelie)
    assert found_by_api(both_sites, "06 12 34 56 78") == ids(amelie)


def test_an_exact_email_with_digits_lists_only_its_owner(desk, london, sam):
    owner = PatientFactory(
        clinic=london, first_name="Olivia", last_name="Bennett", email="olivia.bennett1985@example.com"
    )
    PatientFactory(
        clinic=london, first_name="Ray", last_name="Stranger", email="ray@example.net", phone="+447700198500"
    )
    assert found_at_desk(desk, london, "olivia.bennett1985@example.com") == ids(owner)


# --- Dates of birth -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["18/06/85", "18.06.85"])
def test_a_birth_date_with_a_two_digit_year_finds_the_patient(desk, london, olivia, sam, query):
    assert found_at_desk(desk, london, query) == ids(olivia)


def test_a_surname_with_a_date_of_birth_narrows_to_that_patient(desk, london, olivia, sam):
    PatientFactory(clinic=london, first_name="Oscar", last_name="Bennett", date_of_birth=date(1979, 2, 2))
    assert found_at_desk(desk, london, "Bennett 18/06/1985") == ids(olivia)


# --- Walls: other organisations, merged records ---------------------------------------------------------------------


def test_another_organisations_patient_is_never_found_even_by_staff_of_both(london, newyork, olivia):
    """A receptionist granted London and New York, at London's desk, searching by New York's patient's exact
    number, e-mail, date of birth or name: London's pages list only London's organisation; New York's lists her."""
    nora = PatientFactory(
        clinic=newyork,
        first_name="Nora",
        last_name="Quuxley",
        email="nora.q@example.com",
        phone="+12125550199",
        date_of_birth=date(1971, 3, 4),
    )
    both = desk_for(london, newyork, username="dec6y-both")
    for query in ("+1 212 555 0199", "nora.q@example.com", "1971-03-04", "Quuxley", "555 0199"):
        assert str(nora.pk) not in found_at_desk(both, london, query), query
        assert str(nora.pk) not in found_in_dialog(both, london, query), query
        assert str(nora.pk) not in found_by_api(http(new_api_client(london)[1]), query), query
    assert found_at_desk(both, newyork, "+1 212 555 0199") == ids(nora)


def test_a_merged_away_record_is_in_no_search_result(desk, london, olivia, sam):
    """docs/organisations.md: the tombstone 'leaves every list, search and candidate list'. Searched by its own
    misspelt name, number, e-mail or date of birth, it is listed nowhere; the survivor still is, by its own."""
    duplicate = PatientFactory(
        clinic=london,
        first_name="Olivia",
        last_name="Benett",
        email="liv.b@example.net",
        phone="+447955000111",
        date_of_birth=date(1985, 6, 18),
    )
    patient_merge(merged=duplicate, into=olivia, now=timezone.now(), actor_label="qa dec6y", clinical=True)
    platform = http(new_api_client(london)[1])
    tombstone = str(duplicate.pk)

    for query in ("Benett", "07955 000111", "liv.b@example.net", "18/06/1985", "Olivia"):
        assert tombstone not in found_at_desk(desk, london, query), query
        assert tombstone not in found_in_dialog(desk, london, query), query
        assert tombstone not in found_by_api(platform, query), query
    assert found_at_desk(desk, london, "Olivia") == ids(olivia)


# --- How many, in what order, at what cost --------------------------------------------------------------------------


def test_the_cap_lists_the_first_fifty_and_twenty_in_name_order_and_says_there_are_more(desk, london):
    """51 Smithsons and two names holding 'smithson': the patients page shows 50 ('50+ results', 'Showing the first
    50'), the calendar's dialog 20 ('20+ patients'), by last then first name."""
    first = PatientFactory(clinic=london, first_name="Zed", last_name="Asmithson", phone="+447944000000")
    smithsons = [
        PatientFactory(clinic=london, first_name=f"Ann{n:02d}", last_name="Smithson", phone=f"+4479440001{n:02d}")
        for n in range(51)
    ]
    PatientFactory(clinic=london, first_name="Able", last_name="Smithson-Able", phone="+447944000200")

    page = desk.get(url("patients", london), {"q": "smithson"})
    shown = PATIENT_LINK.findall(page.content.decode())
    dialog = desk.get(url("calendar_book", london), {"q": "smithson"}, HTTP_HX_REQUEST="true")
    offered = PATIENT_LINK.findall(dialog.content.decode())

    assert list(dict.fromkeys(shown)) == [str(p.pk) for p in [first, *smithsons[:49]]]
    text = squash(page)
    assert "50+ results for" in text and "Showing the first 50" in text
    assert list(dict.fromkeys(offered)) == [str(p.pk) for p in [first, *smithsons[:19]]]
    assert "20+ patients" in squash(dialog)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    [
        "+447911123101",
        "07911 123101",
        "7911123",
        "bennett",
        "olivia bennett",
        "Bennett 18/06/1985",
        "18/06/85",
        "liv@ex",
    ],
)
def test_every_condition_a_search_asks_is_answered_by_an_index(london, query):
    """Was KNOWN: every search, even an exact E.164 number, read every live patient of the organisation, because
    no btree index answers "holds these letters". Each condition the search asks (names, e-mail and names as typed
    holding the letters, the number holding the digits, beginning with them or equal to the number, the date of
    birth) now has an index (clinic 0024: trigrams, and the number in pattern order): told not to read the table
    whole, PostgreSQL answers the search from indexes alone. It reads the table instead where that is cheaper, as on
    a test's small one; docs/benchmarks.md measures an organisation of 200,000 records."""
    olivia = PatientFactory(
        clinic=london,
        first_name="Olivia",
        last_name="Bennett",
        email="liv@example.com",
        phone="+447911123101",
        date_of_birth=date(1985, 6, 18),
    )
    search = patient_search(Patient.objects.all(), query, country="GB")
    assert olivia in search
    with connection.cursor() as cursor:
        for method in ("seqscan", "indexscan", "indexonlyscan"):
            cursor.execute(f"SET LOCAL enable_{method} = off")  # the test's transaction ends them
        sql, params = search.query.sql_with_params()
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]

    def nodes(node) -> list[dict]:
        return [node, *(each for child in node.get("Plans", []) for each in nodes(child))]

    read = {(node["Node Type"], node.get("Index Name")) for node in nodes(plan)}
    assert ("Seq Scan", None) not in read, read
    assert any(kind == "Bitmap Index Scan" and name.startswith("patient_") for kind, name in read), read
