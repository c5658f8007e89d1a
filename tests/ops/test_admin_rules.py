"""The shared rules in the admin: a clinic administrator may look, only a superuser may change them.

The issue: `demo`'s administrator switched off an interval rule and a `demo-ny`
booking went through. Rules belong to no clinic yet, so one clinic must not
change what every other clinic may book.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from clinic.models import StaffMembership, StaffRole
from scheduler.models import ContraindicationRule, IntervalRule
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
    assert clinic_admin.get(reverse("admin:{}_{}_add".format(*info))).status_code == 403
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
