"""Review probe (7 December, j): the patient search now that it matches names as people type them.

`clinic.selectors.patient_search` reads every word against the names and e-mail in any case and against
`Patient.search_name` (`core.text_match.normalise_name`: no accents, no apostrophes, hyphens as spaces), kept by
every save. Four surfaces read it: the desk's patients page (`patients/?q=`), the calendar's find-a-patient dialog
(`calendar/book/?q=`), the merge page's search (`patients/<id>/merge/?q=`) and the API's `/api/v1/patients/?search=`.
docs/frontdesk.md (the `patients/?q=` row) and docs/api.md (`?search=`) promise names in any case of any script,
without accents or apostrophes, hyphens as spaces, and dates with a two-digit year.

Probed here, on all four surfaces and beyond tests/clinic/test_search_name.py and the dec6y probe: names in other
scripts and cases (Greek final sigma, Turkish dotted and dotless i, ß and SS, the Dutch IJ, Irish Ó, Ø and Å, Ł,
Vietnamese stacked accents, Cyrillic, CJK, an emoji, double spaces, a trailing apostrophe), an accent typed that
the record lacks, a patient renamed through the desk's form and the API's PATCH, a merged-away record on the
merge page, surnames typed split or joined, queries of only punctuation, of 200 characters, with literal LIKE
wildcards that a record does hold, and the two-digit year beside a phone number holding the same digits. No
answer page may be a 500.

Six questions it raised were mended the same day (`core.text_match.search_name`): a name typed joined ("maryjane",
"obriain") or family name first without a space ("王小明") is found, an umlaut and its spelling ("Müller",
"mueller") find each other, a kana voicing mark is a letter (ダン is not タン), a query of punctuation only finds no
one, and a two-digit-year date asks a number only as its start.
"""

import re
from datetime import date

import pytest
from django.test import Client
from django.utils import timezone

from clinic.merging import patient_merge
from clinic.models import Patient, StaffRole
from tests.api.conftest import http, new_api_client
from tests.factories import ClinicFactory, PatientFactory
from tests.frontdesk.conftest import url
from tests.frontdesk.helpers import inputs
from tests.qa.helpers import staff_client

pytestmark = pytest.mark.django_db

PATIENT_LINK = re.compile(r"/patients/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/")
MERGE_CHOICE = re.compile(r'name="into" value="([0-9a-f-]{36})"')


# --- The world: a London clinic, its receptionist, a clinician (the merge page) and a platform ----------------------


@pytest.fixture
def london(catalogue):
    return ClinicFactory(code="dec7j-london", name="London Clinic", timezone="Europe/London", country="GB")


@pytest.fixture
def desk(london) -> Client:
    return staff_client(london, StaffRole.RECEPTIONIST, "dec7j-desk")


@pytest.fixture
def doctor(london) -> Client:
    return staff_client(london, StaffRole.CLINICIAN, "dec7j-doctor")


@pytest.fixture
def platform(london):
    return http(new_api_client(london)[1])


@pytest.fixture
def subject(london):
    """The record whose merge page searches: like nobody else (no likely duplicate is offered beside the search)."""
    return PatientFactory(
        clinic=london,
        first_name="Zebedee",
        last_name="Quxworth",
        email="zq@example.invalid",
        phone="+447999999001",
        date_of_birth=date(1931, 1, 2),
    )


_numbers = iter(range(100, 1000))


def person(clinic, first: str, last: str, **extra) -> Patient:
    """A patient with an e-mail and number that no name probe can match by accident."""
    n = next(_numbers)
    fields = {"email": f"p{n}@example.net", "phone": f"+4479330{n:05d}", **extra}
    return PatientFactory(clinic=clinic, first_name=first, last_name=last, **fields)


def ids(*patients) -> set[str]:
    return {str(p.pk) for p in patients}


def at_desk(desk, clinic, query: str) -> set[str]:
    response = desk.get(url("patients", clinic), {"q": query})
    assert response.status_code == 200, (response.status_code, query)
    return set(PATIENT_LINK.findall(response.content.decode()))


def in_dialog(desk, clinic, query: str) -> set[str]:
    response = desk.get(url("calendar_book", clinic), {"q": query}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, (response.status_code, query)
    return set(PATIENT_LINK.findall(response.content.decode()))


def on_merge_page(doctor, clinic, subject, query: str) -> set[str]:
    response = doctor.get(url("patient_merge", clinic, subject), {"q": query})
    assert response.status_code == 200, (response.status_code, query)
    return set(MERGE_CHOICE.findall(response.content.decode()))


def by_api(platform, query: str) -> set[str]:
    response = platform.get("/api/v1/patients/", {"search": query})
    assert response.status_code == 200, (response.status_code, query, response.content[:300])
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def everywhere(desk, doctor, platform, london, subject):
    """What each of the four surfaces lists for a query (the API's only up to its 100 characters)."""

    def search(query: str) -> dict[str, set[str]]:
        found = {
            "desk": at_desk(desk, london, query),
            "dialog": in_dialog(desk, london, query),
            "merge": on_merge_page(doctor, london, subject, query),
        }
        if len(query) <= 100:
            found["api"] = by_api(platform, query)
        return found

    return search


def same(found: dict[str, set[str]], expected: set[str]) -> dict[str, set[str]]:
    return {surface: expected for surface in found}


# --- Other scripts and cases ----------------------------------------------------------------------------------------

SCRIPTS = {
    # id: (first name, last name stored; queries that must find them)
    "greek-final-sigma": ("Οδυσσέας", "Παπαδόπουλος", ["ΠΑΠΑΔΟΠΟΥΛΟΣ", "παπαδοπουλος", "Οδυσσεας", "ΟΔΥΣΣΈΑΣ"]),
    "greek-stored-capitals": ("ΝΙΚΌΛΑΟΣ", "ΓΕΩΡΓΊΟΥ", ["Νικόλαος", "νικολαος γεωργιου", "Γεωργίου"]),
    "turkish-dotless": ("Işıl", "Yıldız", ["isil yildiz", "IŞIL", "YILDIZ", "ışıl"]),
    "turkish-dotted": ("İpek", "Şahin", ["ipek sahin", "İPEK", "ŞAHİN", "Ipek"]),
    "german-eszett": ("Jörg", "Straße", ["strasse", "STRASSE", "Straße", "jorg"]),
    "german-capital-ss": ("Hans", "STRASSER", ["straßer", "Strasser"]),
    "dutch-ij": ("IJsbrand", "van IJsselstein", ["ijsbrand", "\u0132sbrand", "van ijsselstein", "IJSSELSTEIN"]),
    "dutch-ij-ligature": ("\u0133sbrand", "Dijkstra", ["ijsbrand", "IJsbrand dijkstra"]),
    "irish-fada": ("Seán", "Ó Súilleabháin", ["sean o suilleabhain", "Ó SÚILLEABHÁIN", "Sean Suilleabhain"]),
    "nordic": ("Søren", "Åberg", ["soren aberg", "SØREN", "åberg", "Aberg"]),
    "nordic-capital-o-stroke": ("Bjørn", "ØDEGÅRD", ["odegard", "Ødegård", "bjorn"]),
    "polish": ("Łukasz", "Wałęsa", ["lukasz walesa", "ŁUKASZ", "wałęsa", "WALESA"]),
    "vietnamese": ("Đặng Thị", "Nguyễn", ["nguyen", "dang thi", "NGUYỄN", "Đặng", "nguyễn đặng"]),
    "vietnamese-decomposed": ("Minh", "Nguye\u0302\u0303n", ["Nguyễn", "nguyen"]),
    "cyrillic": ("Алёна", "Ёлкина", ["алена елкина", "ЁЛКИНА", "Алёна", "АЛЕНА"]),
    "cyrillic-short-i": ("Сергей", "Иванов", ["СЕРГЕЙ", "сергей иванов", "Иванов"]),
    "cjk-family-then-given": ("小明", "王", ["王", "小明", "王 小明"]),
    "emoji": ("Lily 🌸", "Chen", ["🌸", "lily 🌸", "Chen 🌸"]),
    "double-spaces": ("Mary  Ann", "Smythe", ["mary ann", "Mary  Ann Smythe", "ann smythe"]),
    "trailing-apostrophe": ("James", "Jones'", ["jones'", "jones", "JONES’", "james jones"]),
}


@pytest.mark.parametrize("case", list(SCRIPTS))
def test_names_in_other_scripts_and_cases_are_found_on_every_surface(london, everywhere, case):
    first, last, queries = SCRIPTS[case]
    patient = person(london, first, last)
    person(london, "Ordinary", "Decoy")

    for query in queries:
        found = everywhere(query)
        assert found == same(found, ids(patient)), query


def test_a_name_stored_without_an_accent_is_found_typed_with_one(london, everywhere):
    """Jose stored, José typed (a receptionist with a Spanish keyboard): the query is made plain as the name is."""
    jose = person(london, "Jose", "Nunez")
    person(london, "Josh", "Nunn")

    for query in ("José", "JOSÉ NÚÑEZ", "Núñez", "jose nunez"):
        found = everywhere(query)
        assert found == same(found, ids(jose)), query


@pytest.mark.parametrize(
    "first, last, query",
    [
        ("Siobhan", "O'Brien", "obrien"),
        ("Siobhan", "O'Brien", "o brien"),
        ("Siobhan", "O’Brien", "O'BRIEN"),
        ("Mary-Jane", "Watson", "mary jane"),
        ("Mary Jane", "Watson", "mary-jane"),
        ("Anne", "Smith-Jones", "smith jones"),
        ("Anne", "Smith Jones", "smith-jones"),
        ("Dara", "Ó Briain", "o briain"),
    ],
)
def test_hyphens_and_apostrophes_typed_split_or_as_spaces_find_the_name(london, everywhere, first, last, query):
    patient = person(london, first, last)
    person(london, "Ordinary", "Decoy")

    found = everywhere(query)
    assert found == same(found, ids(patient))


@pytest.mark.parametrize(
    "first, last, query",
    [("Mary-Jane", "Watson", "maryjane"), ("Anne", "Smith-Jones", "smithjones"), ("Dara", "Ó Briain", "obriain")],
    ids=["mary-jane", "smith-jones", "o-briain"],
)
def test_a_hyphenated_or_spaced_name_typed_joined_is_found(london, everywhere, first, last, query):
    patient = person(london, first, last)

    found = everywhere(query)
    assert found == same(found, ids(patient))


@pytest.mark.parametrize(
    "first, last, query", [("小明", "王", "王小明"), ("太郎", "山田", "山田太郎")], ids=["chinese", "japanese"]
)
def test_a_cjk_name_typed_family_name_first_without_a_space_is_found(london, everywhere, first, last, query):
    patient = person(london, first, last)

    found = everywhere(query)
    assert found == same(found, ids(patient))


def test_a_kana_voicing_mark_is_not_dropped_as_an_accent(london, everywhere):
    dan = person(london, "ダン", "Ito")
    tan = person(london, "タン", "Ito")

    found = everywhere("ダン")
    assert found == same(found, ids(dan)), tan.pk


@pytest.mark.parametrize(
    "stored, typed", [("Müller", "mueller"), ("Mueller", "Müller")], ids=["umlaut-stored", "ue-stored"]
)
def test_an_umlaut_and_its_transliteration_find_each_other(london, everywhere, stored, typed):
    patient = person(london, "Karl", stored)

    found = everywhere(typed)
    assert found == same(found, ids(patient))


# --- Renamed and merged records -------------------------------------------------------------------------------------


def test_a_patient_renamed_at_the_desk_is_found_by_the_new_name_only(london, desk, everywhere):
    patient = person(london, "Zoë", "Smithers", date_of_birth=date(1979, 5, 6))
    form = desk.get(url("patient_edit", london, patient))
    data = inputs(form)
    data["last_name"] = ["Ødegård-Núñez"]
    saved = desk.post(url("patient_edit", london, patient), data)
    assert saved.status_code == 302, re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]*)', saved.content.decode())

    for query in ("odegard nunez", "zoe ødegård", "Núñez"):
        found = everywhere(query)
        assert found == same(found, ids(patient)), query
    found = everywhere("smithers")
    assert found == same(found, set())


def test_a_patient_renamed_through_the_api_is_found_by_the_new_name_only(london, platform, everywhere):
    patient = person(london, "Zoë", "Smithers")
    response = platform.patch(f"/api/v1/patients/{patient.pk}/", {"first_name": "Łucja"}, format="json")
    assert response.status_code == 200, response.content

    for query in ("lucja smithers", "ŁUCJA", "Łucja"):
        found = everywhere(query)
        assert found == same(found, ids(patient)), query
    found = everywhere("zoe")
    assert found == same(found, set())


def test_a_merged_away_record_is_never_listed_even_by_its_plain_name(london, everywhere):
    """The tombstone kept its plain name (`search_name`); no surface lists it, the merge page's search included."""
    survivor = person(london, "Jose", "Nunez", date_of_birth=date(1980, 3, 4))
    duplicate = person(london, "José", "Núñez-Ortega", date_of_birth=date(1980, 3, 4))
    patient_merge(merged=duplicate, into=survivor, now=timezone.now(), actor_label="qa dec7j", clinical=True)

    for query in ("ortega", "nunez ortega", "Núñez-Ortega", "NÚÑEZ ORTEGA"):
        found = everywhere(query)
        assert found == same(found, set()), query
    found = everywhere("jose nunez")
    assert found == same(found, ids(survivor))


# --- Punctuation, length, wildcards ---------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["!!!", "?", "()", "#", "*", ",", "...", "' '", "‘’", "—", "/", "&", "+", '"\'"'])
def test_a_query_of_only_punctuation_lists_nobody(london, everywhere, query):
    person(london, "Ada", "Lovelace")
    person(london, "Grace", "Hopper")

    found = everywhere(query)
    assert found == same(found, set())


@pytest.mark.parametrize("query", [".", "@"])
def test_a_lone_dot_or_at_sign_lists_nobody(london, everywhere, query):
    person(london, "Ada", "Lovelace")
    person(london, "Grace", "Hopper")

    found = everywhere(query)
    assert found == same(found, set())


def test_a_query_of_200_characters_is_answered_everywhere_and_the_api_says_its_limit(
    london, desk, doctor, platform, subject, everywhere
):
    """The desk's box takes 200 characters (frontdesk.forms.PatientSearchForm); the API's `search` 100, a longer one
    a 400 naming the parameter. Neither a hundred one-letter words nor 200 digits is a 500 on either database."""
    olivia = person(london, "Olivia", "Bennett")
    person(london, "Sam", "Clarke")
    queries = {
        "repeated": ("olivia bennett " * 14)[:200],
        "letters": " ".join(["o"] * 100) + "o",
        "digits": "7" * 200,
        "accents": ("é" * 199) + "e",
        "wildcards": ("%_" * 100),
    }
    assert {len(q) for q in queries.values()} == {200}

    assert everywhere(queries["repeated"]) == {"desk": ids(olivia), "dialog": ids(olivia), "merge": ids(olivia)}
    for name, query in queries.items():
        found = everywhere(query)
        assert set(found) == {"desk", "dialog", "merge"}, name
        response = platform.get("/api/v1/patients/", {"search": query})
        assert response.status_code == 400, (name, response.status_code)
        assert "search" in response.content.decode()
    assert by_api(platform, queries["repeated"][:100]) == ids(olivia)
    # One more than the box takes: the desk says so rather than search part of it.
    too_long = desk.get(url("patients", london), {"q": "o" * 201})
    assert too_long.status_code in (200, 400) and "200 characters" in too_long.content.decode()


def test_sql_wildcards_held_by_a_record_match_only_themselves(london, everywhere):
    """'_' and '%' are literal: 'ann_marie' finds the record holding it, not 'Ann-Marie' or 'Annxmarie'."""
    underscore = person(london, "Ann_Marie", "Doe", email="ann_marie@example.net")
    percent = person(london, "Cent", "Doe", email="full100%@example.net")
    person(london, "Ann-Marie", "Doe", email="annmarie@example.net")
    person(london, "Annxmarie", "Doe", email="annxmarie@example.net")
    person(london, "Cent", "Doe", email="full1000@example.net")

    for query, expected in [("ann_marie", underscore), ("100%@", percent), ("_marie@", underscore)]:
        found = everywhere(query)
        assert found == same(found, ids(expected)), query


# --- The two-digit year beside a number holding the same digits -----------------------------------------------------


@pytest.mark.parametrize(
    "query, who",
    [
        ("18 06 85", {"starts"}),  # spaces: no date format, the start of a number (and a number holding it)
        ("180685", {"starts"}),
        ("18/06/1985", {"born"}),  # a four-digit year is no number's start
        ("Olivia 18/06/85", {"born"}),
    ],
)
def test_a_date_with_spaces_is_a_phone_and_a_four_digit_year_is_a_date(london, everywhere, query, who):
    people = {
        "born": person(london, "Olivia", "Bennett", date_of_birth=date(1985, 6, 18)),
        "starts": person(london, "Sam", "Clarke", phone="+33180685000", date_of_birth=date(1990, 1, 1)),
    }
    found = everywhere(query)
    assert found == same(found, {str(people[name].pk) for name in who})


def test_a_two_digit_year_is_asked_as_a_date_and_as_the_start_of_a_number(london, everywhere):
    """docs/frontdesk.md: digits in pairs are asked both as a date and as the start of a number."""
    born = person(london, "Olivia", "Bennett", date_of_birth=date(1985, 6, 18))
    starts = person(london, "Sam", "Clarke", phone="+33180685000", date_of_birth=date(1990, 1, 1))

    found = everywhere("18/06/85")
    assert found == same(found, ids(born, starts))


def test_a_two_digit_year_does_not_list_a_number_that_only_ends_in_its_digits(london, everywhere):
    born = person(london, "Olivia", "Bennett", date_of_birth=date(1985, 6, 18))
    person(london, "Sam", "Clarke", phone="+447700180685", date_of_birth=date(1990, 1, 1))

    found = everywhere("18/06/85")
    assert found == same(found, ids(born))
