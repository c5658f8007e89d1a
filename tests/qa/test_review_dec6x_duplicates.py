"""Review probe dec6x: duplicate detection when a patient is registered, through the API and the front desk.

What the API contract ("Duplicates"), docs/organisations.md ("Duplicates and merging"), docs/api.md and
docs/frontdesk.md promise: `POST /api/v1/patients/` answers 409 `possible_duplicate` with `candidates` (id, names,
date of birth, why) when the organisation already has a likely match (the same date of birth and a similar name,
"one typo or a swapped first and last name still match"; the same phone in E.164 "whatever format was sent"; the
same e-mail "ignoring case and surrounding spaces"), unless the body says `"confirm_new": true`; the desk's form
lists them, each a link, with "Register as a new patient anyway". Another organisation's patients are never
candidates, nor are merged records; two registrations of one person at the same moment can both succeed.

Probed here, beyond tests/api/test_duplicates.py, tests/clinic/test_duplicates.py, tests/frontdesk/test_duplicates.py
and the earlier probes: phones in the other usual forms (0044, +44 (0)); e-mail in case and JSON white space, and
what is another mailbox (dots and +tags are kept: the docs promise case and spaces only, and Gmail's rules are
Gmail's, so "o.livia@" is someone else's address at most domains); apostrophes of every kind, combining accents and
full-width letters; one-letter differences that reorder the sorted tokens; nicknames (not expected to match);
an organisation with many people born on one day; statement counts that could betray another organisation's
patient; what a platform of one site learns of a sister site's candidate; a merged-away record's own contacts;
`confirm_new` that is not a JSON boolean; registrations at the same instant on PostgreSQL, over the API and at the
desk; and the desk's "register anyway" carried over to a form changed after the candidates were shown. The keyed
same-instant registration is tests/qa/test_contract_audit_probe.py's and is not repeated.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from datetime import date

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clinic import services as clinic_services
from clinic.merging import patient_merge
from clinic.models import Patient, StaffRole
from tests.api.conftest import _clock, http, new_api_client  # noqa: F401 (_clock: autouse fixture)
from tests.factories import PatientFactory
from tests.frontdesk.conftest import make_staff, url
from tests.qa.helpers import NOW, post, problem, squash
from tests.races import race

pytestmark = pytest.mark.django_db

BORN = date(1985, 6, 18)
CANDIDATE_FIELDS = {"id", "first_name", "last_name", "date_of_birth", "reasons"}


def _register(client, clinic, **fields):
    return post(client, "/patients/", {"clinic": str(clinic.pk), **fields})


def _person(clinic, first_name, last_name, *, born=BORN, phone="", email="", **extra) -> Patient:
    return PatientFactory(
        clinic=clinic,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=born,
        phone=phone,
        email=email,
        reminder_channels=[],
        **extra,
    )


@contextmanager
def _both_asked_before_either_is_saved():
    """The duplicate check of two registrations held until both have run it: the same second, made deterministic
    (each then saves, having found nobody)."""
    both = threading.Barrier(2)
    real = clinic_services.duplicate_candidates

    def held(**kwargs):
        found = real(**kwargs)
        both.wait(timeout=10)
        return found

    clinic_services.duplicate_candidates = held
    try:
        yield
    finally:
        clinic_services.duplicate_candidates = real


def _desk(clinic, username: str) -> Client:
    client = Client()
    client.force_login(make_staff(clinic, StaffRole.RECEPTIONIST, username))
    return client


# --- Phones and e-mail addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["0044 7911 123456", "+44 (0)7911 123456", "0044 (0)7911 123456", "+44 7911 123 456", "(07911) 123456"],
    ids=["double-zero", "plus-with-trunk-zero", "double-zero-with-trunk-zero", "plus-spaced", "bracketed-national"],
)
def test_the_same_mobile_written_any_usual_way_finds_the_record(api, clinic, typed):
    """Contract: `phone` (E.164, whatever format was sent). A GB desk reads every usual form of one mobile."""
    olivia = _person(clinic, "Olivia", "Bennett", phone="+447911123456")
    body = problem(_register(api, clinic, first_name="Sam", last_name="Clarke", phone=typed), 409, "possible_duplicate")
    assert [(c["id"], c["reasons"]) for c in body["candidates"]] == [(str(olivia.pk), ["phone"])]
    assert Patient.objects.count() == 1


@pytest.mark.parametrize(
    "typed, same",
    [
        ("\tOLIVIA.Bennett@example.CO.UK\n", True),
        ("oliviabennett@example.co.uk", False),
        ("olivia.bennett+clinic@example.co.uk", False),
        ("olivia.bennett@example.com", False),
    ],
    ids=["case-and-json-white-space", "dot-left-out", "plus-tag", "other-domain"],
)
def test_an_address_matches_in_any_case_and_white_space_and_another_mailbox_does_not(api, clinic, typed, same):
    """docs/organisations.md: `email`: the same address, ignoring case and surrounding spaces. Nothing more is
    folded: a dot or a +tag names another mailbox at most providers, so those register without a question."""
    olivia = _person(clinic, "Olivia", "Bennett", email="Olivia.Bennett@Example.co.uk")
    response = _register(api, clinic, first_name="Sam", last_name="Clarke", email=typed)
    if same:
        body = problem(response, 409, "possible_duplicate")
        assert [(c["id"], c["reasons"]) for c in body["candidates"]] == [(str(olivia.pk), ["email"])]
    else:
        assert response.status_code == 201, response.content


def test_an_address_with_an_accented_domain_matches_in_another_case(api, clinic):
    """docs/organisations.md: the same address ignoring case. Internationalised domains are valid addresses (the
    model's EmailField takes them); the case of their letters is case too."""
    zoe = _person(clinic, "Zoe", "Lindqvist", email="zoe@FL\u00d6DE.example")
    response = _register(api, clinic, first_name="Sam", last_name="Clarke", email="zoe@fl\u00f6de.example")
    body = problem(response, 409, "possible_duplicate")
    assert [(c["id"], c["reasons"]) for c in body["candidates"]] == [(str(zoe.pk), ["email"])]


# --- Names -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored, typed",
    [
        (("Siobhan", "O'Brien"), ("siobhan", "O\u2019Brien")),
        (("Siobhan", "O'Brien"), ("Siobhan", "OBrien")),
        (("Siobhan", "O\u2019Brien"), ("Siobhan", "O Brien")),
        (("Zoe\u0308", "Lindqvist"), ("Zo\u00eb", "LINDQVIST")),
        (("Zo\u00eb", "Lindqvist"), ("Zoe", "lindqvist")),
        (("Jos\u00e9", "Garc\u00eda"), ("\uff2a\uff4f\uff53\uff45", "Garcia")),
        (("Jean-Luc", "Picard"), ("Picard", "Jean  Luc")),
    ],
    ids=[
        "curly-apostrophe",
        "apostrophe-left-out",
        "apostrophe-as-space",
        "combining-vs-precomposed",
        "diaeresis-left-out",
        "full-width-letters",
        "swapped-and-hyphen-as-spaces",
    ],
)
def test_a_name_written_another_way_with_the_same_birth_date_is_a_candidate(api, clinic, stored, typed):
    """docs/organisations.md: names are case folded, accents removed through NFKD, hyphens as spaces, apostrophes
    dropped, spacing collapsed; a swapped first and last name still matches."""
    existing = _person(clinic, *stored)
    first, last = typed
    body = problem(
        _register(api, clinic, first_name=first, last_name=last, date_of_birth=BORN.isoformat()),
        409,
        "possible_duplicate",
    )
    assert [(c["id"], c["reasons"]) for c in body["candidates"]] == [(str(existing.pk), ["date_of_birth_and_name"])]


@pytest.mark.parametrize(
    "stored, typed",
    [
        (("Nina", "Morris"), ("Nina", "Norris")),
        (("Olivia", "Bennett"), ("Olivia", "Pennett")),
        (("\u0141ukasz", "Nowak"), ("Lukasz", "Nowak")),
        (("Sofie", "\u00d8rsted"), ("Sofie", "Orsted")),
        (("Mary-Jane", "Smith"), ("Maryjane", "Smith")),
    ],
    ids=["typo-m-for-n", "typo-p-for-b", "polish-l-stroke", "danish-o-slash", "hyphen-left-out"],
)
def test_a_one_letter_difference_that_reorders_the_words_is_still_a_candidate(api, clinic, stored, typed):
    """docs/organisations.md: 'at least 85, so one typo ... still match'. Each pair differs by one letter (a
    misheard initial, a letter NFKD leaves as it is, a hyphen left out); compared in the order typed they score
    91 to 97, but the words are sorted first and the changed letter sends the surname before or after the first
    name on one side only."""
    existing = _person(clinic, *stored)
    first, last = typed
    response = _register(api, clinic, first_name=first, last_name=last, date_of_birth=BORN.isoformat())
    body = problem(response, 409, "possible_duplicate")
    assert [c["id"] for c in body["candidates"]] == [str(existing.pk)]


@pytest.mark.parametrize(
    "first_name, asked",
    [("Liz", False), ("Beth", False), ("Betty", False), ("Eliza", True), ("Elizabeth", True)],
    ids=["nickname-liz", "nickname-beth", "nickname-betty", "prefix-eliza", "same-name"],
)
def test_a_nickname_is_another_name_but_a_first_name_that_begins_the_other_is_asked_about(
    api, clinic, first_name, asked
):
    """docs/organisations.md: a similar name, or the same surname with one first name the start of the other
    ("Jo" / "Joanna"). Nicknames are not promised (not a defect): Liz, Beth and Betty register without a question."""
    elizabeth = _person(clinic, "Elizabeth", "Taylor")
    response = _register(api, clinic, first_name=first_name, last_name="Taylor", date_of_birth=BORN.isoformat())
    if asked:
        body = problem(response, 409, "possible_duplicate")
        assert [c["id"] for c in body["candidates"]] == [str(elizabeth.pk)]
    else:
        assert response.status_code == 201, response.content


# --- A large organisation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("contact", ["phone", "email"])
def test_the_same_phone_or_email_is_found_however_many_share_the_birth_date(api, clinic, west, contact):
    """A match by phone or e-mail refuses the registration (docs/organisations.md), whatever else the organisation
    holds. An organisation of some 75,000 patients has about 200 born on any one day (more on 1 January), so a
    birthday fills the selector's 200 rows, read in surname order, before Mr Young with the same number is reached."""
    Patient.objects.bulk_create(
        Patient(
            clinic=west,
            organisation_id=west.organisation_id,
            first_name=f"Person{n:03}",
            last_name="Abbott",
            date_of_birth=BORN,
        )
        for n in range(200)
    )
    young = _person(clinic, "Zed", "Young", born=date(1970, 1, 1), phone="+447911124123", email="zed@example.com")
    same = {"phone": "07911 124123"} if contact == "phone" else {"email": "ZED@example.com"}
    response = _register(api, clinic, first_name="Quinn", last_name="Xavier", date_of_birth=BORN.isoformat(), **same)
    body = problem(response, 409, "possible_duplicate")
    assert [(c["id"], c["reasons"]) for c in body["candidates"]] == [(str(young.pk), [contact])]


# --- Other organisations and sister sites ----------------------------------------------------------------------


def test_another_organisations_twin_changes_neither_the_answer_nor_the_statements_run(api, clinic, other_clinic):
    """Another organisation's patients are never candidates (docs/organisations.md); nor may the work done betray
    them: registering someone New York holds (same name, birth date, phone and e-mail) runs the same statements as
    registering someone nobody holds, and both answers have the same shape."""
    _person(other_clinic, "Hana", "Sato", phone="+447911124321", email="hana@example.com")
    warm = _register(api, clinic, first_name="Warm", last_name="Up", date_of_birth="1990-01-01", phone="+447911124999")
    assert warm.status_code == 201, warm.content
    bodies, counts = [], []
    for first, last, phone, email in [
        ("Hana", "Sato", "+447911124321", "hana@example.com"),  # New York's patient, to the letter
        ("Kenji", "Mori", "+447911124654", "kenji@example.com"),  # nobody's
    ]:
        with CaptureQueriesContext(connection) as queries:
            response = _register(
                api, clinic, first_name=first, last_name=last, date_of_birth=BORN.isoformat(), phone=phone, email=email
            )
        assert response.status_code == 201, response.content
        bodies.append(set(response.json()))
        counts.append(len(queries))
    assert bodies[0] == bodies[1]
    assert counts[0] == counts[1], counts


def test_a_sister_sites_candidate_tells_only_who_and_why_and_opens_at_the_desk(api, clinic, west):
    """Contract: candidates carry `id`, names, `date_of_birth`, why. A platform granted only West, meeting London's
    patient, learns nothing more: not her phone, e-mail, home clinic nor anything else she has; the desk at West lists
    her the same way, with a link that opens her record there (the record is the organisation's)."""
    olivia = _person(clinic, "Olivia", "Bennett", phone="+447911123101", email="olivia.private@example.com")
    west_platform = http(new_api_client(west, name="west-only")[1])
    response = _register(west_platform, west, first_name="Olívia", last_name="Benett", date_of_birth=BORN.isoformat())
    body = problem(response, 409, "possible_duplicate")
    [candidate] = body["candidates"]
    assert set(candidate) == CANDIDATE_FIELDS and candidate["id"] == str(olivia.pk)
    assert candidate["reasons"] == ["date_of_birth_and_name"]
    raw = response.content.decode()
    for private in ("+447911123101", "7911", "olivia.private", str(clinic.pk), "london", "London"):
        assert private not in raw, private

    desk = _desk(west, "reception-west")
    page = desk.post(
        url("patient_new", west), {"first_name": "Olívia", "last_name": "Benett", "date_of_birth": BORN.isoformat()}
    )
    assert page.status_code == 409
    text = squash(page)
    assert "Register as a new patient anyway" in text and url("patient", west, olivia) in text
    assert "olivia.private@example.com" not in text and "7911 123101" not in text and "+447911123101" not in text
    assert desk.get(url("patient", west, olivia)).status_code == 200
    assert Patient.objects.count() == 1


# --- Merged records --------------------------------------------------------------------------------------------


def test_a_phone_only_the_merged_away_record_had_offers_its_survivor(api, clinic, west):
    """docs/organisations.md: merged records are never candidates; a merge takes only the contact details the
    survivor lacks. The old number of a merged-away record is still the organisation's knowledge of that person:
    it offers the survivor (mended: clinic.selectors.duplicate_candidates reads tombstones for their survivor)."""
    survivor = _person(clinic, "Olivia", "Bennett", phone="+447911124001")
    merged = _person(west, "Olivia", "Benett", born=date(1985, 6, 19), phone="+447911124002")
    patient_merge(merged=merged, into=survivor, now=NOW, actor_label="clinician@qa", clinical=True)
    assert Patient.objects.get(pk=survivor.pk).phone == "+447911124001"
    response = _register(api, clinic, first_name="Liv", last_name="Bennett", phone="07911 124002")
    body = problem(response, 409, "possible_duplicate")
    assert [c["id"] for c in body["candidates"]] == [str(survivor.pk)]


# --- confirm_new -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["true", 1, "1", None], ids=["string-true", "number-one", "string-one", "null"])
def test_confirm_new_that_is_not_a_json_boolean_is_a_400_and_registers_nothing(api, clinic, sent):
    """The schema's `confirm_new` is a boolean; a string, a number or null must not count as a confirmation (nor
    be read as its absence: the caller meant something, and is told)."""
    _person(clinic, "Olivia", "Bennett", email="olivia@example.com")
    response = _register(
        api, clinic, first_name="Olivia", last_name="Bennett", email="olivia@example.com", confirm_new=sent
    )
    body = problem(response, 400)
    assert "confirm_new" in body["errors"], body
    assert Patient.objects.count() == 1


def test_confirm_new_false_asks_exactly_as_leaving_it_out_does(api, clinic):
    olivia = _person(clinic, "Olivia", "Bennett", email="olivia@example.com")
    fields = {"first_name": "Olivia", "last_name": "Bennett", "email": "olivia@example.com"}
    left_out = problem(_register(api, clinic, **fields), 409, "possible_duplicate")
    false = problem(_register(api, clinic, **fields, confirm_new=False), 409, "possible_duplicate")
    assert false == left_out and [c["id"] for c in false["candidates"]] == [str(olivia.pk)]
    assert Patient.objects.count() == 1


# --- At the same instant (PostgreSQL) --------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_platforms_registering_one_person_at_once_both_succeed_and_the_next_is_asked_about_both(
    catalogue, clinic, west
):
    """docs/organisations.md: 'a question, not a constraint: two desks registering the same person in the same
    second can both succeed, and a merge then joins the records'. Each has asked before the other saves (held so,
    not left to the scheduler: left to it, the second often asks after the first saved and is rightly a 409).
    Neither is a 500 nor a 409 `request_in_progress`; a third registration then lists both."""
    keys = [new_api_client(site, name=f"racer-{site.code}")[1] for site in (clinic, west)]
    body = {"first_name": "Grace", "last_name": "Hopper", "date_of_birth": "1980-12-09", "phone": "+447400123777"}
    with _both_asked_before_either_is_saved():
        answers = race(
            *[lambda k=k, s=s: _register(http(k), s, **body) for k, s in zip(keys, (clinic, west), strict=True)]
        )
    assert [getattr(a, "status_code", a) for a in answers] == [201, 201], [getattr(a, "content", a) for a in answers]
    made = {a.json()["id"] for a in answers}
    assert len(made) == 2 and Patient.objects.filter(last_name="Hopper").count() == 2
    third = problem(_register(http(keys[0]), clinic, **body), 409, "possible_duplicate")
    assert {c["id"] for c in third["candidates"]} == made
    assert all(set(c["reasons"]) == {"date_of_birth_and_name", "phone"} for c in third["candidates"])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_desks_registering_one_person_at_once_both_succeed(catalogue, clinic, west):
    """docs/organisations.md: two desks registering the same person in the same second can both succeed (the desk's
    form goes through the same service). Each has asked before the other saves: both are sent on to the new record's
    history, neither sees an error."""
    desks = [_desk(clinic, "reception-london"), _desk(west, "reception-west")]
    form = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10", "phone": "07400 123888"}
    with _both_asked_before_either_is_saved():
        answers = race(
            *[lambda d=d, s=s: d.post(url("patient_new", s), form) for d, s in zip(desks, (clinic, west), strict=True)]
        )
    assert [getattr(a, "status_code", a) for a in answers] == [302, 302], [getattr(a, "content", a) for a in answers]
    assert Patient.objects.filter(last_name="Lovelace", phone="+447400123888").count() == 2


# --- The desk's "register anyway" ------------------------------------------------------------------------------


def test_register_anyway_covers_the_records_shown_not_one_the_corrected_form_now_matches(clinic):
    """docs/frontdesk.md: the desk sees the records listed and chooses "Register as a new patient anyway". Here the
    receptionist, shown Olivia, corrects the phone the patient misspoke before sending the form again: the number is
    Nora's, whom the desk was never shown."""
    olivia = _person(clinic, "Olivia", "Bennett", phone="+447911123101")
    nora = _person(clinic, "Nora", "Jones", born=date(1970, 3, 3), phone="+447911123202")
    desk = _desk(clinic, "reception-london")
    form = {"first_name": "Olivia", "last_name": "Benett", "date_of_birth": BORN.isoformat(), "phone": "07911 123999"}
    first = desk.post(url("patient_new", clinic), form)
    assert first.status_code == 409 and url("patient", clinic, olivia) in squash(first)
    assert 'name="confirm_new" value="on"' in squash(first)
    shown = re.findall(r'name="shown" value="([^"]+)"', first.content.decode())  # sent back as the page draws them
    assert shown == [str(olivia.pk)]
    again = desk.post(
        url("patient_new", clinic), {**form, "phone": "07911 123202", "confirm_new": "on", "shown": shown}
    )
    assert again.status_code == 409, again.status_code
    assert url("patient", clinic, nora) in squash(again)
    assert Patient.objects.count() == 2
    # Shown Nora too, registering anyway goes through (mended 6 December: the page carries the ids it listed).
    both = re.findall(r'name="shown" value="([^"]+)"', again.content.decode())
    assert set(both) == {str(olivia.pk), str(nora.pk)}
    done = desk.post(url("patient_new", clinic), {**form, "phone": "07911 123202", "confirm_new": "on", "shown": both})
    assert done.status_code == 302 and Patient.objects.count() == 3
