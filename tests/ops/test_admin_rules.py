"""The rules in the admin: the defaults are read-only to a clinic administrator, only a superuser changes them;
an organisation's administrator changes their own organisation's rules (a new version each time).

The issue: `demo`'s administrator switched off an interval rule and a `demo-ny`
booking went through. A default belongs to every organisation, so one organisation must not
change what every other may book.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from clinic.models import StaffMembership, StaffRole
from scheduler.models import ContraindicationRule, IntervalRule, RuleBookVersion
from tests.factories import ClinicFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic_admin(catalogue):
    """A clinic administrator as setup_demo makes one: staff, with every clinic and scheduler permission."""
    user = get_user_model().objects.create_user("clinicadmin", password="pw-for-tests", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["clinic", "scheduler"]))
    StaffMembership.objects.create(user=user, clinic=ClinicFactory(code="demo"), role=StaffRole.CLINIC_ADMIN)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser(catalogue, admin_client):
    return admin_client


def edit_form(rule) -> dict:
    """The change form's fields as the admin would post them, with the rule switched off."""
    data = {}
    for field in rule._meta.fields:
        if field.primary_key or not field.editable:
            continue
        value = field.value_from_object(rule)
        if field.get_internal_type() == "BooleanField":
            if value:
                data[field.name] = "on"
        elif value is not None:
            data[field.name] = value
    data.pop("is_active", None)
    data["change_reason"] = "switched off in a test"
    return data


@pytest.mark.parametrize("model", [IntervalRule, ContraindicationRule], ids=lambda m: m.__name__)
def test_a_clinic_administrator_sees_the_rules_read_only(clinic_admin, model):
    rule = model.objects.filter(is_active=True).first()
    info = model._meta.app_label, model._meta.model_name

    listing = clinic_admin.get(reverse("admin:{}_{}_changelist".format(*info)))
    page = clinic_admin.get(reverse("admin:{}_{}_change".format(*info), args=[rule.pk]))

    assert listing.status_code == 200 and page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "readonly" in html
    assert clinic_admin.get(reverse("admin:{}_{}_add".format(*info))).status_code == 200  # their own rules
    assert clinic_admin.get(reverse("admin:{}_{}_delete".format(*info), args=[rule.pk])).status_code == 403


@pytest.mark.parametrize("model", [IntervalRule, ContraindicationRule], ids=lambda m: m.__name__)
def test_a_clinic_administrator_cannot_switch_a_rule_off_or_delete_it(clinic_admin, model):
    rule = model.objects.filter(is_active=True).first()
    info = model._meta.app_label, model._meta.model_name

    changed = clinic_admin.post(reverse("admin:{}_{}_change".format(*info), args=[rule.pk]), edit_form(rule))
    deleted = clinic_admin.post(reverse("admin:{}_{}_delete".format(*info), args=[rule.pk]), {"post": "yes"})
    bulk = clinic_admin.post(
        reverse("admin:{}_{}_changelist".format(*info)),
        {"action": "delete_selected", "_selected_action": [rule.pk], "post": "yes"},
    )

    assert changed.status_code == 403 and deleted.status_code == 403
    assert bulk.status_code in (200, 302)  # the action is not offered: nothing happens
    rule.refresh_from_db()
    assert rule.is_active


def test_a_superuser_still_switches_a_rule_off(superuser):
    rule = IntervalRule.objects.filter(is_active=True).first()

    response = superuser.post(reverse("admin:scheduler_intervalrule_change", args=[rule.pk]), edit_form(rule))

    assert response.status_code == 302, response.content.decode()[:2000]
    rule.refresh_from_db()
    assert not rule.is_active


def test_a_superusers_change_of_a_default_is_a_new_version_of_the_defaults(superuser):
    rule = IntervalRule.objects.filter(is_active=True).first()

    superuser.post(reverse("admin:scheduler_intervalrule_change", args=[rule.pk]), edit_form(rule))

    version = RuleBookVersion.objects.get()
    assert version.organisation is None and version.number == 2
    assert version.reason == "switched off in a test" and version.diff[0]["change"] == "disabled"


def override_form(rule, organisation, **changes) -> dict:
    data = edit_form(rule)
    data.update({"organisation": organisation.pk, "replaces": rule.pk, "is_active": "on", **changes})
    return data


def test_an_organisation_administrator_relaxes_a_default_for_their_organisation_only(clinic_admin):
    default = IntervalRule.objects.get(default_key="isotretinoin-then-microneedling-block")
    organisation = ClinicFactory(code="demo").organisation
    other = ClinicFactory(code="elsewhere").organisation

    refused = clinic_admin.post(
        reverse("admin:scheduler_intervalrule_add"), override_form(default, other, change_reason="x")
    )
    negative = clinic_admin.post(
        reverse("admin:scheduler_intervalrule_add"), override_form(default, organisation, gap_value=-3)
    )
    unreasoned = clinic_admin.post(
        reverse("admin:scheduler_intervalrule_add"), override_form(default, organisation, change_reason="")
    )
    saved = clinic_admin.post(
        reverse("admin:scheduler_intervalrule_add"),
        override_form(default, organisation, gap_value=4, gap_unit="months", change_reason="ASDS 2017 consensus"),
    )

    assert refused.status_code == 200 and "organisation" in refused.context["adminform"].form.errors
    assert "gap_value" in negative.context["adminform"].form.errors
    assert "change_reason" in unreasoned.context["adminform"].form.errors
    assert saved.status_code == 302, saved.content.decode()[:2000]
    override = IntervalRule.objects.get(organisation=organisation)
    assert (override.replaces, override.gap_value, override.reason) == (default, 4, "ASDS 2017 consensus")
    version = RuleBookVersion.objects.get()
    assert (version.organisation, version.number, version.diff[0]["change"]) == (organisation, 2, "relaxed")
    assert version.created_by.username == "clinicadmin"
    default.refresh_from_db()
    assert default.gap_value == 6  # the default itself is untouched


def test_an_organisation_administrator_needs_a_two_factor_sign_in(clinic_admin, settings):
    settings.STAFF_TWO_FACTOR_REQUIRED = True

    assert clinic_admin.get(reverse("admin:scheduler_intervalrule_add")).status_code != 200
