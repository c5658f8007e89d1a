"""Marking a merge's warning as checked on the survivor's page (clinic.merging.merge_warning_check).

Any staff member who sees the patient's page may mark one standing warning of a merge (per warned booking) as checked,
with a short note: the banner ("To check: the records merged ...") then leaves it out, and a quiet list below it says
who checked it and when, so the record stays in sight. A check covers the warning in the words it had: when the rules
later say something else of the same booking, it is in the banner again. POST only, with the CSRF token; another
clinic's staff, a made-up or malformed id, a merge and a booking that do not belong together: 404, nothing recorded;
a malformed note: 400; a warning that changed since the page was drawn: 409. Checking twice records one check. The
page reads every check in one statement, however many there are.
"""

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clinic.models import MergeWarningCheck, StaffRole
from scheduler.booking import appointment_reschedule
from tests.factories import ClinicFactory, PractitionerFactory
from tests.frontdesk.conftest import make_staff, url
from tests.frontdesk.helpers import HEADING, RECEPTION, book, merge, twin
from tests.frontdesk.html import squash, text_by_id

pytestmark = pytest.mark.django_db

CHECKED = "merge-warnings-checked"


@pytest.fixture
def west(clinic):
    return ClinicFactory(code="west", name="West Clinic", timezone="Europe/London", organisation=clinic.organisation)


@pytest.fixture
def dr_west(west):
    return PractitionerFactory(clinic=west, name="Dr West")


@pytest.fixture
def merged_botox(clinic, west, practitioner, dr_west, patient, frozen):
    """Olivia's Botox booked at London (20 March) and, on a duplicate record at West, three weeks later (10 April),
    merged by a platform: the repeat rule (12 weeks, warn) names both, each booking's warning in its own words."""
    london = book(patient, "botox", frozen + timedelta(days=18), practitioner, frozen)
    duplicate = twin(west, "Benett")
    west_botox = book(duplicate, "botox", frozen + timedelta(days=39), dr_west, frozen)
    assert len(merge(duplicate, patient, frozen).details["warnings"]) == 2
    return london, west_botox


class _Forms(HTMLParser):
    """The check forms inside the banner: each one's action and the values of its fields."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # inside the banner (its element depth)
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.depth:
            self.depth += tag not in ("input", "br")
            if tag == "form":
                self.forms.append({"action": attrs["action"], "method": attrs["method"], "fields": {}})
            elif tag == "input" and self.forms:
                self.forms[-1]["fields"][attrs["name"]] = attrs.get("value", "")
        elif attrs.get("id") == "merge-warnings":
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth and tag not in ("input", "br"):
            self.depth -= 1


def check_forms(client, clinic, patient) -> list[dict]:
    parser = _Forms()
    parser.feed(client.get(url("patient", clinic, patient)).content.decode())
    return parser.forms


def banner(client, clinic, patient) -> str:
    page = squash(client.get(url("patient", clinic, patient)))
    return page.split(HEADING, 1)[1].split("A warning blocks nothing", 1)[0] if HEADING in page else ""


def checked_list(client, clinic, patient) -> str:
    page = client.get(url("patient", clinic, patient)).content
    return text_by_id(page, CHECKED) if f'id="{CHECKED}"'.encode() in page else ""


@pytest.fixture
def rita(receptionist):
    receptionist.first_name, receptionist.last_name = "Rita", "Reyes"
    receptionist.save()
    return receptionist


def form_for(forms: list[dict], appointment) -> dict:
    return next(f for f in forms if f["fields"]["appointment"] == str(appointment.pk))


def test_the_banner_offers_a_check_form_per_warning_with_the_token(reception, clinic, patient, merged_botox):
    london, west_botox = merged_botox
    forms = check_forms(reception, clinic, patient)
    assert sorted(f["fields"]["appointment"] for f in forms) == sorted([str(london.pk), str(west_botox.pk)])
    for form in forms:
        assert form["method"] == "post" and form["action"] == url("merge_warning_check", clinic, patient)
        assert {"csrfmiddlewaretoken", "merge", "appointment", "message", "note"} <= set(form["fields"])
        assert "12 weeks" in form["fields"]["message"]


@pytest.mark.parametrize("role", [StaffRole.RECEPTIONIST, StaffRole.CLINICIAN])
def test_a_check_hides_the_warning_and_says_who_checked_it_and_when(clinic, patient, merged_botox, frozen, role):
    london, west_botox = merged_botox
    user = make_staff(clinic, role, f"desk-{role}")
    user.first_name, user.last_name = "Rita", "Reyes"
    user.save()
    client = Client()
    client.force_login(user)
    form = form_for(check_forms(client, clinic, patient), london)
    response = client.post(form["action"], {**form["fields"], "note": "Both intended: <top-up> at West"})

    assert response.status_code == 302 and response["Location"] == url("patient", clinic, patient)
    shown = banner(client, clinic, patient)
    assert "Fri 20 Mar 2026" not in shown and "Fri 10 Apr 2026, 10:00 at West Clinic" in shown, shown
    assert "bring this together" in shown
    checked = checked_list(client, clinic, patient)
    assert "Botox, Fri 20 Mar 2026, 09:00" in checked, checked
    assert "Checked by Rita Reyes on 2 Mar 2026, 09:00" in checked, checked
    assert "Both intended: <top-up> at West" in checked  # the note, as text
    assert b"&lt;top-up&gt;" in client.get(url("patient", clinic, patient)).content  # escaped
    check = MergeWarningCheck.objects.get()
    assert (check.appointment_id, check.checked_by, check.checked_at) == (london.pk, user, frozen)
    assert check.message == form["fields"]["message"] and str(check.merge_id) == form["fields"]["merge"]


def test_when_every_warning_is_checked_the_banner_goes_and_the_record_stays(reception, clinic, patient, merged_botox):
    for form in check_forms(reception, clinic, patient):
        assert reception.post(form["action"], form["fields"]).status_code == 302
    assert banner(reception, clinic, patient) == ""
    assert checked_list(reception, clinic, patient).count("Checked by reception on 2 Mar 2026") == 2


def test_the_sister_sites_desk_sees_it_checked_too(reception, clinic, west, patient, merged_botox):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    reception.post(form["action"], form["fields"])
    west_desk = Client()
    west_desk.force_login(make_staff(west, StaffRole.RECEPTIONIST, "west-desk"))
    assert "Fri 20 Mar 2026" not in banner(west_desk, west, patient)
    assert "Checked by reception" in checked_list(west_desk, west, patient)


def test_checking_twice_records_one_check(reception, rita, clinic, patient, merged_botox):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    assert reception.post(form["action"], {**form["fields"], "note": "first"}).status_code == 302
    again = reception.post(form["action"], {**form["fields"], "note": "second"}, follow=True)
    assert again.status_code == 200
    assert "That warning was already checked, by Rita Reyes on 2 Mar 2026." in squash(again)
    assert list(MergeWarningCheck.objects.values_list("note", flat=True)) == ["first"]


def test_a_warning_that_changes_after_the_check_shows_again(reception, clinic, patient, merged_botox, frozen):
    """London's warning names the West booking's date: the West Botox moved three days later still warns, in other
    words, which nobody checked."""
    london, west_botox = merged_botox
    checked_form = form_for(check_forms(reception, clinic, patient), london)
    reception.post(checked_form["action"], {**checked_form["fields"], "note": "both intended"})
    assert "Fri 20 Mar 2026" not in banner(reception, clinic, patient)

    west_botox.refresh_from_db()
    appointment_reschedule(
        appointment=west_botox, start_at=west_botox.start_at + timedelta(days=3), actor=RECEPTION, now=frozen
    )

    shown = banner(reception, clinic, patient)
    assert "Botox, Fri 20 Mar 2026, 09:00" in shown and "is booked 13 April 2026" in shown, shown
    assert "An earlier warning on it was checked by reception on 2 Mar 2026." in shown
    assert "Fri 20 Mar 2026" not in checked_list(reception, clinic, patient)
    # The new words can be checked in turn: a second check of the same booking, the first one kept.
    new_form = form_for(check_forms(reception, clinic, patient), london)
    assert new_form["fields"]["message"] != checked_form["fields"]["message"]
    assert reception.post(new_form["action"], new_form["fields"]).status_code == 302
    assert "Fri 20 Mar 2026" not in banner(reception, clinic, patient)
    assert MergeWarningCheck.objects.filter(appointment=london).count() == 2


def test_a_check_of_words_the_rules_no_longer_say_records_nothing(reception, clinic, patient, merged_botox, frozen):
    """A page drawn before the West booking moved: its form carries the old words, so a check would cover a warning
    nobody saw. 409, nothing recorded, the warning shown as it is now."""
    london, west_botox = merged_botox
    stale = form_for(check_forms(reception, clinic, patient), london)
    west_botox.refresh_from_db()
    appointment_reschedule(
        appointment=west_botox, start_at=west_botox.start_at + timedelta(days=3), actor=RECEPTION, now=frozen
    )
    response = reception.post(stale["action"], stale["fields"])
    assert response.status_code == 409
    page = squash(response)
    assert "That warning has changed or no longer stands since the page was drawn, so nothing was recorded" in page
    assert "is booked 13 April 2026" in page
    assert not MergeWarningCheck.objects.exists()


def test_another_clinics_staff_get_404_and_nothing_is_recorded(reception, clinic, other_clinic, patient, merged_botox):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    outsider = Client()
    outsider.force_login(make_staff(other_clinic, StaffRole.CLINICIAN, "nyc-clinician"))
    assert outsider.post(form["action"], form["fields"]).status_code == 404  # not their clinic
    assert outsider.post(url("merge_warning_check", other_clinic, patient), form["fields"]).status_code == 404
    assert not MergeWarningCheck.objects.exists()


def test_a_merge_and_a_booking_that_do_not_belong_together_are_404(
    reception, clinic, west, practitioner, dr_west, patient, merged_botox, frozen
):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    # Another patient of the organisation, with a merge of their own that warned too.
    other = twin(clinic, "Carter")
    book(other, "botox", frozen + timedelta(days=17), practitioner, frozen)
    duplicate = twin(west, "Karter")
    their_booking = book(duplicate, "botox", frozen + timedelta(days=38), dr_west, frozen)
    their_merge = merge(duplicate, other, frozen)
    assert their_merge.details["warnings"]
    unwarned = book(patient, "filler", frozen + timedelta(days=60), practitioner, frozen)
    mixes = {
        "their merge": {"merge": str(their_merge.pk)},
        "their booking": {"appointment": str(their_booking.pk)},
        "a booking the merge did not warn of": {"appointment": str(unwarned.pk)},
    }
    for what, changed in mixes.items():
        assert reception.post(form["action"], {**form["fields"], **changed}).status_code == 404, what
    assert reception.post(url("merge_warning_check", clinic, other), form["fields"]).status_code == 404
    assert not MergeWarningCheck.objects.exists()


@pytest.mark.parametrize("field", ["merge", "appointment"])
@pytest.mark.parametrize("bad", ["", "not-a-uuid", "123", "00000000-0000-0000-0000-000000000000", "\x00"])
def test_a_bad_id_is_404(reception, clinic, patient, merged_botox, field, bad):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    assert reception.post(form["action"], {**form["fields"], field: bad}).status_code == 404
    assert not MergeWarningCheck.objects.exists()


@pytest.mark.parametrize(
    ("changed", "error"),
    [
        ({"note": "x" * 501}, "Keep the note to 500 characters or fewer."),
        ({"note": "fine\x00"}, "Remove the NUL character from the note."),
        ({"message": ""}, "Say which warning was checked, as it was shown."),
        ({"message": "y" * 2001}, "Say which warning was checked, as it was shown."),
    ],
    ids=["note too long", "NUL in the note", "no message", "message too long"],
)
def test_a_malformed_check_is_a_clear_400_and_records_nothing(reception, clinic, patient, merged_botox, changed, error):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    response = reception.post(form["action"], {**form["fields"], **changed})
    assert response.status_code == 400
    assert f"Nothing was recorded: {error}" in squash(response)
    assert HEADING in squash(response)  # the page, its warnings still there
    assert not MergeWarningCheck.objects.exists()


def test_a_nul_in_the_message_is_refused_not_a_500(reception, clinic, patient, merged_botox):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    response = reception.post(form["action"], {**form["fields"], "message": form["fields"]["message"] + "\x00"})
    assert response.status_code == 400
    assert "Nothing was recorded: Say which warning was checked, as it was shown." in squash(response)
    assert not MergeWarningCheck.objects.exists()


@pytest.mark.parametrize("method", ["get", "head", "put", "delete"])
def test_only_post_is_taken(reception, clinic, patient, merged_botox, method):
    london, _ = merged_botox
    form = form_for(check_forms(reception, clinic, patient), london)
    response = getattr(reception, method)(form["action"])
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert not MergeWarningCheck.objects.exists()


def test_the_csrf_token_is_required(receptionist, clinic, patient, merged_botox):
    london, _ = merged_botox
    client = Client(enforce_csrf_checks=True)
    client.force_login(receptionist)
    form = form_for(check_forms(client, clinic, patient), london)
    without = {name: value for name, value in form["fields"].items() if name != "csrfmiddlewaretoken"}
    assert client.post(form["action"], without).status_code == 403
    assert not MergeWarningCheck.objects.exists()
    assert client.post(form["action"], form["fields"]).status_code == 302


def test_the_checks_are_one_statement_however_many(
    reception, clinic, patient, merged_botox, django_assert_max_num_queries
):
    forms = check_forms(reception, clinic, patient)  # caches warmed
    with CaptureQueriesContext(connection) as unchecked:
        reception.get(url("patient", clinic, patient))
    baseline = len(unchecked)  # now: the log is emptied by the next request
    assert baseline > 10  # the page was measured
    for form in forms:
        reception.post(form["action"], {**form["fields"], "note": "intended"})
    with django_assert_max_num_queries(baseline) as checked:
        page = reception.get(url("patient", clinic, patient))
    assert text_by_id(page.content, CHECKED).count("Checked by reception") == 2
    reading_checks = [q["sql"] for q in checked.captured_queries if "mergewarningcheck" in q["sql"].lower()]
    assert len(reading_checks) == 1, reading_checks


def test_no_standing_warning_reads_no_check(reception, clinic, patient, practitioner, frozen):
    book(patient, "botox", frozen + timedelta(days=18), practitioner, frozen)
    reception.get(url("patient", clinic, patient))
    with CaptureQueriesContext(connection) as page:
        reception.get(url("patient", clinic, patient))
    assert len(page) > 10  # the page was measured
    assert not [q for q in page.captured_queries if "mergewarningcheck" in q["sql"].lower()]
