"""An outside QA probe of the Django admin (/admin/): no 500 anywhere, edits there keep the product's
promises, and an organisation's (or a site's) administrator reaches only their own tenant's rows.

Promises checked (each test quotes its own):
* docs/rules.md ("Who edits", "After booking", "Rule books per organisation, versioned"): a rule edited in the
  admin is the next version of its rule book, with a reason, and re-checks the affected future bookings;
* domain brief 6 and clinic/admin.py (PatientAdmin.save_related): the history, medication courses and intake
  edited in the admin are the record the rules read, so the patient's future bookings are re-checked, each move
  audited (actor `system: record re-check`) and sent as a webhook; docs/reminders.md: a channel switched on "by
  ... the admin" reaches the outbox;
* docs/organisations.md ("Front desk and admin"): a clinic administrator sees their clinics and the patients of
  their organisations; "anything of another organisation: not found".

Models are enumerated from `django.contrib.admin.site._registry`, so a newly registered admin is swept too.
Tenants: organisation A (`qa-ldn` and its sister site `qa-wst`) and organisation B (`qa-zny`). Every row of B
carries the word "Zorgon"; the rows only West holds (not shared with the organisation) carry "Westbrook".

Written by a QA pass; nine findings failed then and pass since: 500s on out-of-range years in admin date filters,
on a NUL in a filter value or a catalogue address (PostgreSQL), on a junk user id in the staff membership form, on
a plan template without a gap unit and on one with a gap of 2,000,000,000 days, on the same condition twice in the
intake inline; an interval gap of 1,000,000,000 weeks saved in the admin that crashed the re-check and bookings; a
clinic made without an organisation joining the one whose code it shares; a home clinic of another organisation.
"""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, timedelta
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.signals import got_request_exception
from django.db import connection
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic.merging import patient_merge
from clinic.models import (
    ApiClient,
    Appointment,
    AppointmentStatus,
    AuditEvent,
    MedicationCourse,
    Patient,
    PatientCondition,
    Practitioner,
    ProcedureRecord,
    StaffMembership,
    StaffRole,
)
from clinic.services import procedure_record_add
from plans.models import PlanSession, PlanTemplate, TreatmentPlan
from reminders import feeds
from reminders.models import ContactOptIn, ContactOptOut, OutboxMessage, WebhookEndpoint
from scheduler import rulebooks
from scheduler.booking import Actor, appointment_book
from scheduler.defaults import _grant_admin_permissions
from scheduler.models import ContraindicationRule, IntervalRule, RecheckRun, RuleBookVersion
from tests import shipped
from tests.factories import ClinicFactory, OrganisationFactory, PatientFactory, PractitionerFactory
from tests.qa.helpers import (
    NEW_YORK,
    NOW,
    PASSWORD,
    as_rendered,
    client_for,
    form_fields,
    fresh,
    ldn,
    superuser_client,
    url,
)

pytestmark = pytest.mark.django_db

RECEPTION = Actor("reception@qa-admin")
REGISTRY = sorted(admin.site._registry, key=lambda m: m._meta.label)
B_MARK = "Zorgon"  # every row of organisation B says it
WEST_MARK = "Westbrook"  # every row only the West site holds says it


def label(model) -> str:
    return model._meta.label


@pytest.fixture(autouse=True)
def _clock(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # sign-in is force_login here
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def errors():
    """Every exception a request raised (the client is told not to re-raise, so a 500 is a status)."""
    seen: list[str] = []

    def receiver(sender, request=None, **kwargs):
        exc = sys.exc_info()[1]
        seen.append(f"{getattr(request, 'method', '?')} {getattr(request, 'get_full_path', lambda: '?')()}: {exc!r}")

    got_request_exception.connect(receiver, weak=False)
    yield seen
    got_request_exception.disconnect(receiver)


def clinic_admin(username, *, clinic=None, organisation=None):
    """A clinic administrator as setup_demo makes one (tests/qa/test_security_probe.py does the same)."""
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True)
    StaffMembership.objects.create(user=user, clinic=clinic, organisation=organisation, role=StaffRole.CLINIC_ADMIN)
    _grant_admin_permissions(user)
    return user


# --- The world: two organisations, one of two sites -------------------------------------------------------------


@pytest.fixture
def world(catalogue):
    shipped.care_texts()
    shipped.plan_templates()
    w: dict = {}
    org_a = OrganisationFactory(code="qa-org-a", name="QA Chain")
    w["ldn"] = ldn_clinic = ClinicFactory(code="qa-ldn", name="QA London", organisation=org_a)
    w["wst"] = wst = ClinicFactory(code="qa-wst", name="QA West", organisation=org_a)
    org_b = OrganisationFactory(code="qa-org-zorgon", name="Zorgon Holdings")
    w["zny"] = zny = ClinicFactory(
        code="qa-zny", name="Zorgon Beauty NYC", timezone="America/New_York", organisation=org_b
    )
    w["dr_ldn"] = PractitionerFactory(clinic=ldn_clinic, name="Dr Lena London")
    w["dr_wst"] = PractitionerFactory(clinic=wst, name="Dr Westbrook")
    w["dr_zny"] = PractitionerFactory(clinic=zny, name="Dr Zorgon")
    w["olivia"] = PatientFactory(clinic=ldn_clinic, first_name="Olivia", last_name="Bennett", email="olivia@qa.example")
    w["wendy"] = PatientFactory(clinic=wst, first_name="Wendy", last_name="Shared", email="wendy@qa.example")
    w["zeb"] = PatientFactory(clinic=zny, first_name="Zebedee", last_name="Zorgonson", email="zeb@zorgon.example")
    twin = PatientFactory(clinic=zny, first_name="Zebbie", last_name="Zorgonson", email="zebbie@zorgon.example")

    def booked(patient, practitioner, when, code="botox"):
        return appointment_book(
            patient=patient,
            procedure_code=code,
            start_at=when,
            actor=RECEPTION,
            now=NOW,
            practitioner_id=practitioner.pk,
        ).appointment

    w["appt_ldn"] = booked(w["olivia"], w["dr_ldn"], ldn(2026, 3, 10))
    w["appt_wst"] = booked(w["wendy"], w["dr_wst"], ldn(2026, 3, 11))
    w["appt_zny"] = booked(w["zeb"], w["dr_zny"], datetime(2026, 3, 12, 10, tzinfo=ZoneInfo("America/New_York")))
    AuditEvent.objects.filter(appointment=w["appt_wst"]).update(actor_label="westbrook-desk")
    AuditEvent.objects.filter(appointment=w["appt_zny"]).update(actor_label="zorgon-desk", reason="Zorgon reason")
    for key, recipient in (("appt_wst", "westbrook@qa.example"), ("appt_zny", "zorgon@zorgon.example")):
        OutboxMessage.objects.create(
            appointment=w[key], kind="pre_care", channel="email", due_at=NOW + timedelta(days=1), created_at=NOW,
            recipient=recipient, last_error=f"{recipient} bounced",
        )  # fmt: skip
    w["merge_zny"] = patient_merge(merged=twin, into=w["zeb"], now=NOW, actor_label="Zorgon clinician", clinical=True)
    ContactOptOut.objects.create(patient=w["zeb"], channel="sms", via="sms_stop", at=NOW, detail="Zorgon STOP")
    ContactOptIn.objects.create(patient=w["zeb"], channel="email", via="patient_page", at=NOW, wording="Zorgon yes")
    w["feed_wst"] = feeds.calendar_feed_create(now=NOW, practitioner=w["dr_wst"], created_by="westbrook-desk")[0]
    w["feed_zny"] = feeds.calendar_feed_create(now=NOW, practitioner=w["dr_zny"], created_by="zorgon-desk")[0]
    w["feed_zeb"] = feeds.calendar_feed_create(now=NOW, patient=w["zeb"], created_by="zorgon-desk")[0]
    user_model = get_user_model()
    for clinic, name in ((wst, "westbrook-desk"), (zny, "zorgon-desk")):
        user = user_model.objects.create_user(name, password=PASSWORD)
        StaffMembership.objects.create(user=user, clinic=clinic, role=StaffRole.RECEPTIONIST)
        w[f"user_{clinic.code}"] = user
    w["device_zny"] = TOTPDevice.objects.create(user=w["user_qa-zny"], name="Zorgon phone", confirmed=True)
    zorgon_rule = IntervalRule(
        organisation=org_b,
        earlier_procedure_id="filler",
        later_procedure_id="filler",
        gap_value=3,
        gap_unit="weeks",
        severity="warn",
        basis="practice",
        source="Zorgon protocol",
    )
    w["version_zny"] = rulebooks.rule_save(rule=zorgon_rule, user=None, reason="Zorgon reason", now=NOW)
    w["rule_zny"] = zorgon_rule
    w["cirule_zny"] = ContraindicationRule(
        organisation=org_b, condition_id="diabetes", procedure_id="botox", severity="relative", source="Zorgon ci"
    )
    rulebooks.rule_save(rule=w["cirule_zny"], user=None, reason="Zorgon reason", now=NOW)
    w["run_zny"] = RecheckRun.objects.create(cause="Zorgon rule changed", organisation=org_b, created_at=NOW)
    w["template_zny"] = PlanTemplate.objects.create(
        organisation=org_b, code="zorgon-course", name="Zorgon course", procedure_id="botox", sessions=2,
        min_gap_value=3, min_gap_unit="months", ideal_gap_value=14, ideal_gap_unit="weeks", max_gap_value=4,
        max_gap_unit="months", source="Zorgon practice",
    )  # fmt: skip
    w["plan_zny"] = TreatmentPlan.objects.create(
        patient=w["zeb"], template=w["template_zny"], clinic=zny, created_at=NOW
    )
    PlanSession.objects.create(plan=w["plan_zny"], index=1, earliest_on=date(2026, 3, 12), ideal_on=date(2026, 3, 12),
                               latest_on=date(2026, 3, 12), appointment=w["appt_zny"])  # fmt: skip
    w["plan_wst"] = TreatmentPlan.objects.create(
        patient=w["wendy"], template=PlanTemplate.objects.filter(organisation=None).first(), clinic=wst, created_at=NOW
    )
    w["client_zny"] = ApiClient(name="Zorgon platform")
    w["client_zny"].set_new_key()
    w["client_zny"].save()
    w["client_zny"].clinics.set([zny])
    w["hook_zny"] = WebhookEndpoint.objects.create(
        client=w["client_zny"], url="https://zorgon.example/hook", description="Zorgon hook"
    )
    w["org_a"], w["org_b"] = org_a, org_b
    return w


def b_objects(w) -> list:
    """Every row of organisation B the world holds, one per registered model where there is one."""
    return [
        w["org_b"],
        w["zny"],
        w["dr_zny"],
        w["zeb"],
        w["appt_zny"],
        AuditEvent.objects.filter(appointment=w["appt_zny"]).first(),
        w["merge_zny"],
        StaffMembership.objects.get(user=w["user_qa-zny"]),
        OutboxMessage.objects.filter(appointment=w["appt_zny"]).first(),
        ContactOptOut.objects.get(patient=w["zeb"]),
        ContactOptIn.objects.get(patient=w["zeb"]),
        w["feed_zny"],
        w["feed_zeb"],
        w["rule_zny"],
        w["cirule_zny"],
        w["version_zny"],
        w["run_zny"],
        w["template_zny"],
        w["plan_zny"],
        w["client_zny"],
        w["hook_zny"],
        w["device_zny"],
        w["user_qa-zny"],
    ]


# --- Forms as the admin renders them ---------------------------------------------------------------------------


MANAGEMENT = re.compile(r"-(TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS$")


# Garbage posted to every add and change form; each says what a field of each kind gets (None: as rendered).
GARBAGE = {
    "wrong-types-and-nul": {"text": "ju\x00nk<script>", "number": "twelve", "date": "yesterday", "time": "noon",
                            "select": "no-such-choice", "textarea": '["\\u0000"]', "email": "a\x00@b",
                            "url": "javascript:x"},
    "ten-thousand": {"text": "x" * 10000, "number": "9" * 400, "date": "1" * 10000, "time": "1" * 10000,
                     "select": None, "textarea": "y" * 10000, "email": "e" * 9990 + "@x.example",
                     "url": "https://" + "u" * 9990 + ".example"},
    "impossible-and-negative": {"text": None, "number": "-5", "date": "2026-02-30", "time": "25:61",
                                "select": None, "textarea": None, "email": None, "url": None},
    "far-future": {"text": None, "number": "2147483647", "date": "9999-12-31", "time": "23:59:59",
                   "select": None, "textarea": None, "email": None, "url": None},
    "year-one": {"text": None, "number": "0", "date": "0001-01-01", "time": "00:00",
                 "select": None, "textarea": None, "email": None, "url": None},
    "empty": {"text": "", "number": "", "date": "", "time": "", "select": "", "textarea": "", "email": "",
              "url": ""},
}  # fmt: skip


def garbage_data(fields: list[dict], variant: str) -> dict:
    plan = GARBAGE[variant]
    data: dict = {}
    for field in fields:
        name, kind = field["name"], field["kind"]
        if kind == "hidden" or MANAGEMENT.search(name):
            data[name] = field["value"]
            continue
        if kind == "checkbox":
            if field["checked"] or variant in ("far-future", "year-one"):
                data[name] = field["value"] or "on"
            continue
        if kind == "radio":
            continue
        key = kind if kind in plan else "text"
        value = plan[key]
        if value is None:  # as rendered; a choice: the selected one, else the first real one
            if kind == "select":
                chosen = field["selected"] or [o for o in field["options"] if o][:1]
                value = chosen if field.get("multiple") else (chosen[0] if chosen else "")
            else:
                value = field["value"]
        data[name] = value
    return data


# --- 1. No 500 anywhere, as a superuser ------------------------------------------------------------------------

ON_POSTGRES = connection.vendor == "postgresql"


def changelist_queries(model_admin) -> list[str]:
    """Odd query strings for a change list: unknown filters, junk ordering, odd searches, impossible dates,
    junk page numbers and filter values. (The out-of-range years and the NUL in a filter value that do answer
    500 have tests of their own below.)"""
    queries = [
        "no_such_filter=1&o=999",
        "o=abc.-0.x.99999999999999999999",
        "q=%00",
        "q=" + "a" * 10000,
        "q=" + quote("Zoë Ørsted 北京 🙂 ' OR 1=1 -- %_\\ \"unterminated"),
        "p=abc",
        "p=99999999999999999999",
        "_changelist_filters=%00junk%3D%26&all=&e=1",
        "_popup=1&_to_field=id",
        "_popup=1&_to_field=junk",
    ]
    hierarchy = model_admin.date_hierarchy or "created_at"
    for params in ({"year": 9999, "month": 13}, {"year": "abc"}, {"year": 2026, "month": 2, "day": 30}):
        queries.append(urlencode({f"{hierarchy}__{k}": v for k, v in params.items()}))
    for entry in model_admin.list_filter:
        name = entry[0] if isinstance(entry, tuple) else entry
        if isinstance(name, str):
            queries.append(urlencode({f"{name}__id__exact": "not-a-uuid", f"{name}__isempty": "2"}))
            queries.append(urlencode({f"{name}__exact": "junk", f"{name}__isnull": "maybe"}))
    return queries


BAD_PKS = ["not-a-uuid", "9" * 40, "00000000-0000-0000-0000-000000000000"]
# The 500s found, each pinned by its own test below (so the sweep keeps watching everything else). None left:
# the staff membership form's junk user id and the plan template form are swept again since they were fixed.
KNOWN_500: set[tuple[str, str]] = set()


@pytest.mark.parametrize("model", REGISTRY, ids=label)
def test_no_admin_page_of_a_registered_model_answers_500_to_odd_requests(world, errors, model):
    """Brief: the admin must never answer 500, whatever the query string, address or form body. Every
    registered model admin, as a superuser: change list with odd query strings, add page, change, delete and
    history pages of an existing row and of non-existent or malformed ids, and garbage posted to the add and
    change forms (wrong types, NUL bytes, 10,000-character strings, impossible and far dates, negative and
    huge numbers, empty required fields)."""
    client = superuser_client()
    model_admin = admin.site._registry[model]
    changelist = url(model, "changelist")
    first = model._default_manager.order_by("pk").first()
    if model is get_user_model():
        first = model._default_manager.filter(is_superuser=False).order_by("pk").first()
    failures = []

    def check(response, what):
        if response.status_code >= 500:
            failures.append(f"{what} -> {response.status_code}")
        return response

    for query in changelist_queries(model_admin):
        check(client.get(f"{changelist}?{query}"), f"GET changelist?{query[:80]}")
    for view in ("change", "delete", "history"):
        for bad in BAD_PKS:
            check(client.get(f"{changelist}{bad}/{view}/"), f"GET {view} of {bad[:20]}")
        if first is not None:
            check(client.get(url(model, view, first.pk) + "?_changelist_filters=%00%3D&_popup=1"), f"GET {view}")

    forms = [("add", url(model, "add"))] + ([("change", url(model, "change", first.pk))] if first else [])
    for form_name, form_url in forms:
        page = check(client.get(form_url), f"GET {form_name}")
        fields = form_fields(page.content.decode(), model) if page.status_code == 200 else []
        for variant in GARBAGE:
            if {(label(model), variant), (label(model), "*")} & KNOWN_500:
                continue
            data = {**(garbage_data(fields, variant) or {"junk": variant}), "_save": "Save"}
            check(client.post(form_url, data), f"POST {form_name} form, {variant}")
    assert failures == [], "\n".join(failures + errors)


def test_date_filters_with_out_of_range_years_are_not_500(world, errors):
    """Brief: no 500 anywhere in the admin. The appointments' and the outbox's date drill-down (`date_hierarchy`)
    and the year lookup any change list accepts on a date field answer a year the calendar cannot hold with an
    error page or the unfiltered list (as `?start_at__year=9999&start_at__month=13` already does), not 500."""
    client = superuser_client()
    statuses = {
        path: client.get(path).status_code
        for path in (
            "/admin/clinic/appointment/?start_at__year=9999",
            "/admin/clinic/appointment/?start_at__year=9999&start_at__month=12&start_at__day=31",
            "/admin/reminders/outboxmessage/?due_at__year=9999&due_at__month=12",
            "/admin/clinic/patient/?created_at__year=0",
        )
    }
    assert all(status < 500 for status in statuses.values()), (statuses, errors)


def test_a_nul_byte_in_a_filter_value_or_a_catalogue_address_is_not_500(world, errors):
    """Brief: no 500 anywhere in the admin, NUL bytes included (the API answers them with a 400 problem,
    tests/api/test_tenancy_sweep.py). A NUL typed into a list filter's value or into the address of a catalogue
    entry (whose key is its code, text) is not found or refused, not 500."""
    client = superuser_client()
    statuses = {
        path: client.get(path).status_code
        for path in (
            "/admin/clinic/appointment/?status__exact=junk%00",
            "/admin/reminders/outboxmessage/?channel__exact=%00",
            "/admin/clinic/proceduretype/bo%00tox/change/",
            "/admin/clinic/condition/%00/history/",
        )
    }
    assert all(status < 500 for status in statuses.values()), (statuses, errors)


def test_a_junk_user_id_in_the_staff_membership_form_is_a_form_error(world, errors):
    """Brief: garbage posted to an add or change form gets the form back with errors, never 500."""
    client = superuser_client()
    before = StaffMembership.objects.count()

    response = client.post(
        "/admin/clinic/staffmembership/add/",
        {"user": "not-a-number", "clinic": str(world["ldn"].pk), "organisation": "", "role": "receptionist"},
    )

    assert StaffMembership.objects.count() == before
    assert response.status_code == 200, (response.status_code, errors)


def plan_template_form(**overrides) -> dict:
    data = {
        "organisation": "",
        "code": "qa-course",
        "name": "QA course",
        "procedure": "microneedling",
        "kind": "course",
        "sessions": "3",
        "min_gap_value": "4",
        "min_gap_unit": "weeks",
        "ideal_gap_value": "4",
        "ideal_gap_unit": "weeks",
        "max_gap_value": "6",
        "max_gap_unit": "weeks",
        "area": "",
        "source": "QA",
        "note": "",
        "is_active": "on",
        "_save": "Save",
    }
    return {**data, **overrides}


def test_the_plan_template_form_takes_a_well_formed_template(world):
    """docs/plans.md: superusers add templates in the admin (the control for the two tests below)."""
    response = superuser_client().post("/admin/plans/plantemplate/add/", plan_template_form())
    assert response.status_code == 302 and PlanTemplate.objects.filter(code="qa-course").exists()


def test_the_plan_template_form_names_a_missing_gap_unit_instead_of_500(world, errors):
    """docs/plans.md: "A template that cannot make a window is refused, naming the field: ... an unknown unit."
    A unit left empty is the form's "This field is required", not a 500."""
    response = superuser_client().post("/admin/plans/plantemplate/add/", plan_template_form(min_gap_unit=""))
    assert response.status_code == 200, (response.status_code, errors)
    assert not PlanTemplate.objects.filter(code="qa-course").exists()


def test_the_plan_template_form_refuses_a_gap_beyond_the_calendar(world, errors):
    """docs/plans.md: "A template that cannot make a window is refused, naming the field." A gap of two
    thousand million days makes no window: refused on the form, not 500."""
    data = plan_template_form(max_gap_value="2000000000", max_gap_unit="days")
    response = superuser_client().post("/admin/plans/plantemplate/add/", data)
    assert response.status_code == 200, (response.status_code, errors)
    assert not PlanTemplate.objects.filter(code="qa-course").exists()


# --- 2. Edits through the admin keep the product's promises --------------------------------------------------


@pytest.fixture
def desk(world, settings, django_capture_on_commit_callbacks):
    """A London patient, a practitioner, a platform subscribed to London's webhooks; a rule change's re-check
    runs in the process that saved it (no broker, the embedded default) when the test lets the commit happen."""
    settings.CELERY_BROKER_URL = ""
    platform = ApiClient(name="QA platform")
    platform.set_new_key()
    platform.save()
    platform.clinics.set([world["ldn"]])
    WebhookEndpoint.objects.create(client=platform, url="https://platform.qa.example/hooks")
    patient = PatientFactory(clinic=world["ldn"], first_name="Rhea", last_name="Recheck", email="rhea@qa.example")

    def book(code, when, who=patient):
        return appointment_book(
            patient=who, procedure_code=code, start_at=when, actor=RECEPTION, now=NOW,
            practitioner_id=world["dr_ldn"].pk,
        ).appointment  # fmt: skip

    return {"patient": patient, "book": book, "commit": django_capture_on_commit_callbacks}


def moved(appointment, action: str) -> AuditEvent:
    return AuditEvent.objects.filter(appointment=appointment, action=action).latest("at")


def webhook_sent(appointment, event: str) -> bool:
    return OutboxMessage.objects.filter(appointment=appointment, channel="webhook", event=event).exists()


def test_a_default_interval_rule_edited_in_the_admin_is_a_new_version_and_flags_future_bookings(world, desk):
    """docs/rules.md: "Superusers edit, disable (`is_active`) or add defaults in the admin, with a reason (a new
    version of the defaults)"; "A change to the rules re-checks every affected patient's future bookings";
    domain 6: what now breaks a block rule "becomes `needs_review`... each move is audited ... and sent as a
    webhook"; the audit entry carries the rule book version (`d2.o1` after a change of a default)."""
    procedure_record_add(patient=desk["patient"], procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    microneedling = desk["book"]("microneedling", ldn(2026, 3, 20))  # 19 days after: fine under 2 weeks
    assert microneedling.status == AppointmentStatus.CONFIRMED
    client = superuser_client()
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    page = url(IntervalRule, "change", default.pk)
    data = {**as_rendered(client, page, IntervalRule), "gap_value": "4", "change_reason": "QA: 4 weeks now"}

    with desk["commit"](execute=True):
        response = client.post(page, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    version = RuleBookVersion.objects.filter(organisation=None).latest("number")
    assert (version.number, version.reason, version.created_by.username) == (2, "QA: 4 weeks now", "qa-root")
    assert version.diff[0]["change"] == "tightened" and version.diff[0]["fields"]["gap_value"] == {"from": 2, "to": 4}
    assert fresh(microneedling).status == AppointmentStatus.NEEDS_REVIEW
    audit = moved(microneedling, "needs_review")
    assert audit.actor_label == "system: record re-check" and audit.details["rulebook_version"] == "d2.o1"
    assert webhook_sent(microneedling, "appointment.needs_review")


def test_an_organisations_contraindication_added_and_deleted_in_the_admin_is_versioned_and_rechecked(world, desk):
    """docs/rules.md: an organisation's administrators (a `clinic_admin` of the organisation "or of one of its
    clinics") "add, change and delete their organisation's rules"; "each change ... writes a RuleBookVersion";
    "a delete is recorded with an automatic reason"; "deleting the organisation's rule gives the default back
    ('reverted to the default')"; domain 6: what now meets an absolute contraindication becomes needs_review,
    only for that organisation's patients (New York's identical booking stays as it was)."""
    from clinic.services import IntakeLine, conditions_replace

    zeb_dr = world["dr_zny"]
    conditions_replace(patient=desk["patient"], lines=[IntakeLine("diabetes", "active")], now=NOW)
    conditions_replace(patient=world["zeb"], lines=[IntakeLine("diabetes", "active")], now=NOW)
    mine = desk["book"]("microneedling", ldn(2026, 3, 20))
    theirs = appointment_book(
        patient=world["zeb"], procedure_code="microneedling", start_at=datetime(2026, 4, 10, 11, tzinfo=NEW_YORK), actor=RECEPTION,
        now=NOW,
        practitioner_id=zeb_dr.pk,
    ).appointment  # fmt: skip
    assert (mine.status, theirs.status) == ("pending_clearance", "pending_clearance")  # relative by default
    default = ContraindicationRule.objects.get(default_key="microneedling-diabetes")
    site_admin = client_for(clinic_admin("qa-ldn-admin", clinic=world["ldn"]))
    add = url(ContraindicationRule, "add")
    data = {
        **as_rendered(site_admin, add, ContraindicationRule),
        "organisation": str(world["org_a"].pk),
        "replaces": str(default.pk),
        "condition": "diabetes",
        "medication": "",
        "procedure": "microneedling",
        "severity": "absolute",
        "applies_to": default.applies_to,
        "source": "QA chain protocol",
        "is_active": "on",
        "change_reason": "QA: no microneedling with diabetes here",
    }

    with desk["commit"](execute=True):
        added = site_admin.post(add, data)

    assert added.status_code == 302, added.content.decode()[:3000]
    rule = ContraindicationRule.objects.get(organisation=world["org_a"])
    version = RuleBookVersion.objects.filter(organisation=world["org_a"]).latest("number")
    assert (version.number, version.reason, version.diff[0]["change"]) == (
        2,
        "QA: no microneedling with diabetes here",
        "tightened",
    )
    assert fresh(mine).status == AppointmentStatus.NEEDS_REVIEW and webhook_sent(mine, "appointment.needs_review")
    assert fresh(theirs).status == AppointmentStatus.PENDING_CLEARANCE

    with desk["commit"](execute=True):
        deleted = site_admin.post(url(ContraindicationRule, "delete", rule.pk), {"post": "yes"})

    assert deleted.status_code == 302 and not ContraindicationRule.objects.filter(pk=rule.pk).exists()
    version = RuleBookVersion.objects.filter(organisation=world["org_a"]).latest("number")
    assert version.number == 3 and version.diff[0]["change"] == "reverted to the default"
    assert version.reason == "deleted in the admin by qa-ldn-admin"
    assert fresh(mine).status == AppointmentStatus.PENDING_CLEARANCE  # back to the default's clearance
    assert moved(mine, "released").actor_label == "system: record re-check"


def record_form(client, patient) -> tuple[str, dict]:
    page = url(Patient, "change", patient.pk)
    return page, as_rendered(client, page, Patient)


def test_a_procedure_added_and_removed_in_the_patients_admin_rechecks_their_bookings(world, desk):
    """clinic/admin.py and domain 6: "Whenever a patient's record changes (a reported procedure, ...) every
    future active appointment of the affected patients is checked again ... Nothing is changed silently: each
    move is audited, shown to staff and sent as a webhook"; docs/rules.md: "Each change is audited with its cause
    ... and the actor `system: record re-check`". A Botox reported in the admin 10 days before a booked
    microneedling flags it; removing that line (entered in error) releases it."""
    microneedling = desk["book"]("microneedling", ldn(2026, 3, 11))
    client = superuser_client()
    page, data = record_form(client, desk["patient"])
    data.update(
        {
            "procedure_records-0-procedure": "botox",
            "procedure_records-0-performed_at_0": "2026-03-01",  # done: a date still to come is refused now
            "procedure_records-0-performed_at_1": "11:00:00",
            "procedure_records-0-source": "reported",
        }
    )

    response = client.post(page, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert ProcedureRecord.objects.filter(patient=desk["patient"], procedure_id="botox").exists()
    assert fresh(microneedling).status == AppointmentStatus.NEEDS_REVIEW
    audit = moved(microneedling, "needs_review")
    assert audit.actor_label == "system: record re-check" and "admin" in audit.reason
    assert webhook_sent(microneedling, "appointment.needs_review")

    page, data = record_form(client, desk["patient"])
    data["procedure_records-0-DELETE"] = "on"
    response = client.post(page, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert not ProcedureRecord.objects.filter(patient=desk["patient"]).exists()
    assert fresh(microneedling).status == AppointmentStatus.CONFIRMED
    assert moved(microneedling, "released").actor_label == "system: record re-check"
    assert webhook_sent(microneedling, "appointment.released")


def test_a_medication_course_added_then_ended_in_the_admin_flags_then_releases_the_booking(world, desk):
    """Domain 6: a medication course is part of the record the rules keep holding over; domain 3: an ongoing
    anticoagulant course is an absolute contraindication to microneedling; docs/rules.md: a medication
    contraindication covers "the days the course covers". Added in the admin (ongoing): needs review; its end
    recorded in the admin before the visit: released."""
    microneedling = desk["book"]("microneedling", ldn(2026, 3, 20))
    client = superuser_client()
    page, data = record_form(client, desk["patient"])
    data.update({"medication_courses-0-drug": "anticoagulant", "medication_courses-0-started_on": "2026-02-01"})

    assert client.post(page, data).status_code == 302
    assert fresh(microneedling).status == AppointmentStatus.NEEDS_REVIEW

    page, data = record_form(client, desk["patient"])
    data["medication_courses-0-ended_on"] = "2026-03-05"
    assert client.post(page, data).status_code == 302

    assert MedicationCourse.objects.get(patient=desk["patient"]).ended_on == date(2026, 3, 5)
    assert fresh(microneedling).status == AppointmentStatus.CONFIRMED
    assert "admin" in moved(microneedling, "released").reason


def test_an_intake_line_added_in_the_admin_sends_the_booking_back_to_clearance(world, desk):
    """Domain 6: "what now meets a relative one goes back to clinician clearance"; docs/rules.md: the intake is
    part of the record re-checked (`clearance_requested`, `appointment.clearance_requested`). Diabetes is a
    relative contraindication to microneedling (domain 3)."""
    microneedling = desk["book"]("microneedling", ldn(2026, 3, 20))
    client = superuser_client()
    page, data = record_form(client, desk["patient"])
    data.update({"conditions-0-condition": "diabetes", "conditions-0-status": "active"})

    response = client.post(page, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert PatientCondition.objects.filter(patient=desk["patient"], condition_id="diabetes").exists()
    assert fresh(microneedling).status == AppointmentStatus.PENDING_CLEARANCE
    assert moved(microneedling, "clearance_requested").actor_label == "system: record re-check"
    assert webhook_sent(microneedling, "appointment.clearance_requested")


def test_the_same_condition_twice_in_the_intake_inline_is_a_form_error(world, desk, errors):
    """Brief: garbage posted to the admin's forms gets errors back, never 500; the intake holds a condition
    "once per area" (clinic.models.PatientCondition's constraints). Two new rows naming the same condition with
    no area are refused on the form."""
    client = superuser_client()
    page, data = record_form(client, desk["patient"])
    prefix = "conditions"
    row = {f"{prefix}-0-condition": "eczema", f"{prefix}-0-status": "history"}
    data.update(row)
    data.update({key.replace("-0-", "-1-"): value for key, value in row.items()})
    data[f"{prefix}-1-id"] = ""
    data[f"{prefix}-1-patient"] = data.get(f"{prefix}-0-patient", str(desk["patient"].pk))
    data[f"{prefix}-TOTAL_FORMS"] = "2"

    response = client.post(page, data)

    assert response.status_code == 200, (response.status_code, errors)
    assert not PatientCondition.objects.filter(patient=desk["patient"]).exists()


def test_a_channel_switched_on_in_the_admin_plans_the_patients_reminders(world, desk):
    """docs/reminders.md: "A change to how the patient is reached (an address added, a channel or care
    instructions switched on, by the patient's page, staff's edit or the admin) reaches the outbox ...: the
    reminders and pre-care of their coming appointments that no row stands for yet are planned then"."""
    quiet = PatientFactory(clinic=world["ldn"], first_name="Quinn", last_name="Quiet", email="", reminder_channels=[])
    botox = desk["book"]("botox", ldn(2026, 3, 20), who=quiet)
    assert not OutboxMessage.objects.filter(appointment=botox, channel="email").exists()
    client = superuser_client()
    page, data = record_form(client, quiet)
    data.update({"email": "quinn@qa.example", "reminder_channels": '["email"]'})

    response = client.post(page, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    assert fresh(quiet).reminder_channels == ["email"]
    kinds = set(OutboxMessage.objects.filter(appointment=botox, channel="email").values_list("kind", flat=True))
    assert "reminder" in kinds, kinds


def test_an_interval_gap_the_calendar_cannot_hold_is_refused_by_the_admin_or_harmless(world, desk, errors):
    """docs/rules.md: "a gap below 1 or an unknown unit is refused on the field"; the brief: an admin edit keeps
    the product's promises. A gap of a thousand million weeks saved by an organisation's administrator must
    either be refused on the form, or leave the re-check run finishing and bookings answering (a refusal with
    no earliest date, not a crash)."""
    from scheduler.booking import UnableToBook

    procedure_record_add(patient=desk["patient"], procedure_code="botox", performed_at=ldn(2026, 3, 1), now=NOW)
    desk["book"]("microneedling", ldn(2026, 3, 20))  # a future booking for the re-check to look at
    site_admin = client_for(clinic_admin("qa-ldn-admin", clinic=world["ldn"]))
    add = url(IntervalRule, "add")
    default = IntervalRule.objects.get(default_key="botox-then-microneedling")
    data = {
        **as_rendered(site_admin, add, IntervalRule),
        "organisation": str(world["org_a"].pk),
        "replaces": str(default.pk),
        "earlier_procedure": "botox",
        "earlier_medication": "",
        "later_procedure": "microneedling",
        "gap_value": "1000000000",
        "gap_unit": "weeks",
        "severity": "block",
        "scope": default.scope,
        "basis": "practice",
        "source": "QA",
        "is_active": "on",
        "change_reason": "QA: forever",
    }
    with desk["commit"]() as after_commit:
        response = site_admin.post(add, data)
    assert response.status_code < 500, errors
    if response.status_code == 200:  # refused on the form
        assert not IntervalRule.objects.filter(organisation=world["org_a"]).exists()
        return
    for callback in after_commit:  # the re-check run, as the request that saved the rule runs it (no broker)
        callback()
    with pytest.raises(UnableToBook):
        desk["book"]("microneedling", ldn(2026, 4, 20))


# --- 3. Tenancy: an organisation's or a site's administrator ---------------------------------------------------


def names_any(text: str, marks) -> bool:
    """Whether the page names a marked row (in any case: usernames and addresses are lower case)."""
    text = text.lower()
    return any(mark.lower() in text for mark in marks)


def west_only(w) -> list:
    """Rows of the West site that its organisation does not share: London's site administrator never sees them
    (patients are shared; appointments, practitioners, staff, messages and feeds belong to the site)."""
    return [
        w["wst"],
        w["dr_wst"],
        w["appt_wst"],
        AuditEvent.objects.filter(appointment=w["appt_wst"]).first(),
        OutboxMessage.objects.filter(appointment=w["appt_wst"], recipient__startswith="westbrook").first(),
        StaffMembership.objects.get(user=w["user_qa-wst"]),
        w["feed_wst"],
        w["plan_wst"],
    ]


def tenant_admins(w) -> dict:
    return {
        "organisation A's administrator": (
            clinic_admin("qa-org-a-admin", organisation=w["org_a"]),
            [B_MARK],
            b_objects(w),
        ),
        "London's site administrator": (
            clinic_admin("qa-ldn-admin", clinic=w["ldn"]),
            [B_MARK, WEST_MARK],
            b_objects(w) + west_only(w),
        ),
    }


def test_every_change_list_and_raw_id_popup_shows_a_tenant_administrator_only_their_own_rows(world, errors):
    """docs/organisations.md: "In the admin, a clinic administrator sees their clinics and the patients of their
    organisations"; "anything of another organisation: not found"; Rule-book versions and re-check runs "list the
    defaults' and the administrator's own organisations'". Every registered change list (and its raw-id lookup
    popup), as an administrator of organisation A and as London's site administrator: no row of organisation B
    (nor, for the site, of West's own rows) appears, and none answers 500."""
    root = superuser_client()  # the control: the rows are there to leak
    for path in ("/admin/clinic/appointment/", "/admin/reminders/outboxmessage/", "/admin/clinic/practitioner/"):
        assert names_any(root.get(path).content.decode(), [B_MARK]) and names_any(
            root.get(path).content.decode(), [WEST_MARK]
        )
    leaks = []
    for who, (user, marks, _) in tenant_admins(world).items():
        client = client_for(user)
        for model in REGISTRY:
            for query in ("", "?_popup=1&_to_field=id", "?q=Zorg", "?q=Westbr"):  # a search box echoes its term
                response = client.get(url(model, "changelist") + query)
                text = response.content.decode() if response.status_code == 200 else ""
                if response.status_code >= 500 or names_any(text, marks):
                    leaks.append(f"{who}: {label(model)}{query} -> {response.status_code}")
    assert leaks == [], "\n".join(leaks + errors)


def test_another_tenants_rows_are_not_found_by_address_and_cannot_be_deleted(world, errors):
    """docs/organisations.md: another organisation's rows are "not found (404 in URLs ...)"; the site's rows to
    another site's administrator likewise. The change, history and delete pages of every such row answer a
    redirect, 403 or 404 (never 200 with its data), and a confirmed delete posted anyway removes nothing."""
    problems = []
    for who, (user, marks, rows) in tenant_admins(world).items():
        client = client_for(user)
        for row in rows:
            model = type(row)
            for view in ("change", "history", "delete"):
                response = client.get(url(model, view, row.pk))
                text = response.content.decode()
                if response.status_code not in (302, 403, 404) and names_any(text, marks):
                    problems.append(f"{who}: {view} of {label(model)} {row.pk} -> {response.status_code}")
                elif response.status_code >= 500:
                    problems.append(f"{who}: {view} of {label(model)} {row.pk} -> {response.status_code}")
            client.post(url(model, "delete", row.pk), {"post": "yes"})
            if not model._default_manager.filter(pk=row.pk).exists():
                problems.append(f"{who}: deleted {label(model)} {row.pk}")
    assert problems == [], "\n".join(problems + errors)


def autocomplete_targets() -> list[tuple[str, str, str]]:
    """Every (app_label, model_name, field_name) the autocomplete endpoint may be asked: each foreign key and
    many-to-many field of every registered model whose target is registered too."""
    targets = []
    for model in REGISTRY:
        for field in model._meta.get_fields():
            if (field.many_to_one or field.many_to_many) and field.concrete and field.related_model in REGISTRY:
                targets.append((model._meta.app_label, model._meta.model_name, field.name))
    return targets


def test_no_autocomplete_answer_names_another_tenants_rows(world, errors):
    """docs/organisations.md: a clinic administrator sees "their clinics and the patients of their organisations";
    "anything of another organisation: not found". The admin's autocomplete endpoint
    (/admin/autocomplete/?app_label=..&model_name=..&field_name=..), asked for every relation of every registered
    model, with no term and with the other tenant's words, names none of their rows and never answers 500."""
    targets = autocomplete_targets()
    assert ("clinic", "staffmembership", "user") in targets and ("clinic", "appointment", "patient") in targets
    leaks = []
    for who, (user, marks, _) in tenant_admins(world).items():
        client = client_for(user)
        for app_label, model_name, field_name in targets:
            for term in ("", "Zorg", "Westbrook", "zeb", "%00"):
                query = urlencode(
                    {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": term}
                )
                response = client.get(f"/admin/autocomplete/?{query}")
                text = response.content.decode() if response.status_code == 200 else ""
                if response.status_code >= 500 or names_any(text, [*marks, "Zebedee"]):
                    leaks.append(f"{who}: {app_label}.{model_name}.{field_name} term={term!r} -> {text[:120]}")
    assert leaks == [], "\n".join(leaks + errors)


def test_the_organisations_administrator_sees_both_sites_and_the_site_administrator_the_shared_patients(world):
    """docs/organisations.md: grants to "a whole organisation (every clinic, now and later)"; "Every site's desk
    finds and books the organisation's patients". The controls for the sweeps above: the organisation's
    administrator sees West's practitioner and appointment; London's site administrator sees West's patient
    (shared) but not West's practitioner."""
    org_admin = client_for(clinic_admin("qa-org-a-admin", organisation=world["org_a"]))
    site_admin = client_for(clinic_admin("qa-ldn-admin", clinic=world["ldn"]))

    assert WEST_MARK in org_admin.get("/admin/clinic/practitioner/").content.decode()
    assert org_admin.get(url(Appointment, "change", world["appt_wst"].pk)).status_code == 200
    assert site_admin.get(url(Patient, "change", world["wendy"].pk)).status_code == 200
    assert "Lena London" in site_admin.get("/admin/clinic/practitioner/").content.decode()
    assert WEST_MARK not in site_admin.get("/admin/clinic/practitioner/").content.decode()


def test_a_site_administrator_cannot_place_staff_practitioners_or_feeds_at_the_sister_site(world, errors):
    """docs/organisations.md: "a site's administrator grants roles at their clinics"; "The practitioner form offers
    the clinics' own staff only"; docs/reminders.md: calendar feeds, "a clinic administrator sees and chooses only
    their clinics'". London's site administrator posting West's id by hand (no choice lists it) makes nothing
    at West; the same forms with London's id work (the control)."""
    site_admin = client_for(clinic_admin("qa-ldn-admin", clinic=world["ldn"]))
    newcomer = get_user_model().objects.create_user("qa-newcomer", password=PASSWORD)
    wst, ldn_clinic = world["wst"], world["ldn"]

    responses = [
        site_admin.post(
            "/admin/clinic/staffmembership/add/",
            {"user": newcomer.pk, "clinic": str(wst.pk), "organisation": "", "role": "clinic_admin"},
        ),
        site_admin.post(
            "/admin/clinic/practitioner/add/",
            {
                **{f"{p}-{k}": "0" for p in ("working_hours", "time_off") for k in ("TOTAL_FORMS", "INITIAL_FORMS")},
                "clinic": str(wst.pk),
                "name": "Dr Placed At West",
                "is_active": "on",
            },
        ),
        site_admin.post("/admin/reminders/calendarfeed/add/", {"practitioner": str(world["dr_wst"].pk)}),
    ]

    assert all(r.status_code < 500 for r in responses), errors
    assert not StaffMembership.objects.filter(user=newcomer).exists()
    assert not world["dr_wst"].calendar_feeds.filter(revoked_at=None).exclude(pk=world["feed_wst"].pk).exists()
    assert not Practitioner.objects.filter(name="Dr Placed At West").exists()
    control = site_admin.post(
        "/admin/clinic/staffmembership/add/",
        {"user": newcomer.pk, "clinic": str(ldn_clinic.pk), "organisation": "", "role": "receptionist"},
    )
    assert control.status_code == 302 and StaffMembership.objects.filter(user=newcomer, clinic=ldn_clinic).exists()


def test_a_clinic_made_without_an_organisation_becomes_an_organisation_of_one(world, errors):
    """docs/organisations.md: "organisations are created, and clinics moved between them, only by superusers (a
    clinic made without one becomes an organisation of one)". A new clinic coded like organisation A (whose own
    clinics are coded otherwise) must not join A and share its patients' records."""
    client = superuser_client()
    page = url(world["ldn"].__class__, "add")
    data = {
        **as_rendered(client, page, world["ldn"].__class__),
        "code": "qa-org-a",
        "name": "Unrelated Skin Studio",
        "organisation": "",
        "timezone": "Europe/London",
    }

    response = client.post(page, data)

    assert response.status_code == 302, (response.status_code, response.content.decode()[:2000], errors)
    clinic = world["ldn"].__class__.objects.get(code="qa-org-a")
    assert clinic.organisation_id != world["org_a"].pk
    assert list(clinic.organisation.clinics.all()) == [clinic]


def test_a_patients_home_clinic_stays_in_their_organisation_when_edited_in_the_admin(world, errors):
    """docs/organisations.md: "`Patient.organisation` is the owner; `Patient.clinic` stays as the patient's *home*
    clinic ... whose organisation a new patient joins"; the admin shows the organisation read-only, and a merge
    or move between organisations is not an admin edit. A superuser picking another organisation's clinic as
    Olivia's home clinic leaves her record split between two organisations unless refused."""
    client = superuser_client()
    olivia = world["olivia"]
    page = url(Patient, "change", olivia.pk)
    data = {**as_rendered(client, page, Patient), "clinic": str(world["zny"].pk)}

    response = client.post(page, data)

    assert response.status_code < 500, errors
    olivia = fresh(olivia)
    assert olivia.clinic.organisation_id == olivia.organisation_id, (response.status_code, olivia.clinic)
