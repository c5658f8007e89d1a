"""Who may call: API keys (hashed, revocable, rotatable), staff sessions with CSRF, and the 401/403 split."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.sites import AdminSite
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory
from django.utils import timezone

from api.admin import ApiClientAdmin
from clinic.models import ApiClient, hash_key
from tests.api.conftest import http, new_api_client, problem_of, session
from tests.factories import ClinicFactory

pytestmark = pytest.mark.django_db


def test_no_key_is_401_with_the_token_challenge(clinic):
    response = http().get("/api/v1/clinics/")
    body = problem_of(response, 401)
    assert body["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_unknown_key_is_401(clinic):
    body = problem_of(http("deadbeef.not-a-real-key").get("/api/v1/clinics/"), 401)
    assert body["code"] == "authentication_failed"


def test_right_prefix_wrong_secret_is_401(clinic):
    client, key = new_api_client(clinic)
    problem_of(http(client.key_prefix + ".wrong").get("/api/v1/clinics/"), 401)


@pytest.mark.parametrize(
    "key", ["x" * 300 + ".secret", "'--;.secret", "ünï.secret", "%_.secret", ".secret-without-prefix", "abc."]
)
def test_an_odd_or_over_long_prefix_is_401_and_no_other_client(clinic, key):
    new_api_client(clinic)
    problem_of(http(key).get("/api/v1/clinics/"), 401)


def test_a_key_finds_its_own_client_among_others(clinic, other_clinic):
    mine, my_key = new_api_client(clinic)
    theirs, their_key = new_api_client(other_clinic)
    assert [c["id"] for c in http(my_key).get("/api/v1/clinics/").json()["results"]] == [str(clinic.pk)]
    assert [c["id"] for c in http(their_key).get("/api/v1/clinics/").json()["results"]] == [str(other_clinic.pk)]


def test_malformed_authorization_header_is_401(clinic):
    response = http().get("/api/v1/clinics/", HTTP_AUTHORIZATION="Token two parts")
    problem_of(response, 401)


def test_revoked_key_is_401(clinic):
    client, key = new_api_client(clinic)
    assert http(key).get("/api/v1/clinics/").status_code == 200
    ApiClient.objects.filter(pk=client.pk).update(revoked_at=timezone.now())
    body = problem_of(http(key).get("/api/v1/clinics/"), 401)
    assert "revoked" in body["detail"]


def test_key_is_stored_only_hashed(clinic):
    client, key = new_api_client(clinic)
    client.refresh_from_db()
    assert key not in (client.key_hash, client.key_prefix)
    assert client.key_hash == hash_key(key)


def test_last_used_is_recorded_at_most_once_a_minute(clinic):
    client, key = new_api_client(clinic)
    assert client.last_used_at is None
    http(key).get("/api/v1/clinics/")
    client.refresh_from_db()
    first = client.last_used_at
    assert first is not None
    http(key).get("/api/v1/clinics/")
    client.refresh_from_db()
    assert client.last_used_at == first  # within the minute: no second write
    ApiClient.objects.filter(pk=client.pk).update(last_used_at=first - timedelta(minutes=2))
    http(key).get("/api/v1/clinics/")
    client.refresh_from_db()
    assert client.last_used_at > first - timedelta(minutes=2)


def test_staff_session_sees_their_clinics(clinic, receptionist):
    ClinicFactory(code="not-mine")
    response = session(receptionist).get("/api/v1/clinics/")
    assert response.status_code == 200
    assert [c["code"] for c in response.json()["results"]] == ["london"]


def test_staff_session_write_needs_csrf(clinic, receptionist):
    response = session(receptionist, csrf=True).post(
        "/api/v1/patients/", {"first_name": "A", "last_name": "B"}, format="json"
    )
    body = problem_of(response, 403)
    assert "CSRF" in body["detail"]


def test_user_without_a_clinic_role_is_403(clinic, django_user_model):
    user = django_user_model.objects.create_user(username="nobody", password="x-for-tests")
    body = problem_of(session(user).get("/api/v1/clinics/"), 403)
    assert body["code"] == "permission_denied"


def test_create_api_client_prints_the_key_alone_on_the_last_line(clinic, other_clinic):
    out = StringIO()
    call_command("create_api_client", "Booksy", "--clinic", "london", "--clinic", "newyork", "--clinical", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    client = ApiClient.objects.get(name="Booksy")
    assert client.clinical
    assert set(client.clinics.values_list("code", flat=True)) == {"london", "newyork"}
    assert client.key_hash == hash_key(key) and key.startswith(client.key_prefix + ".")
    response = http(key).get("/api/v1/clinics/")
    assert response.json()["count"] == 2


def test_create_api_client_refuses_unknown_clinic(clinic):
    with pytest.raises(CommandError, match="nowhere"):
        call_command("create_api_client", "X", "--clinic", "nowhere", stdout=StringIO())
    assert not ApiClient.objects.exists()


def _admin_request(admin_user):
    request = RequestFactory().post("/admin/clinic/apiclient/")
    request.user = admin_user
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_admin_revoke_action_stops_the_key(clinic, admin_user):
    client, key = new_api_client(clinic)
    ApiClientAdmin(ApiClient, AdminSite()).revoke(_admin_request(admin_user), ApiClient.objects.filter(pk=client.pk))
    problem_of(http(key).get("/api/v1/clinics/"), 401)


def test_admin_rotate_action_replaces_the_key(clinic, admin_user):
    client, old_key = new_api_client(clinic)
    request = _admin_request(admin_user)
    ApiClientAdmin(ApiClient, AdminSite()).rotate(request, ApiClient.objects.filter(pk=client.pk))
    shown = [str(m) for m in request._messages]
    new_key = shown[0].rsplit(" ", 1)[-1]
    problem_of(http(old_key).get("/api/v1/clinics/"), 401)
    assert http(new_key).get("/api/v1/clinics/").status_code == 200


def test_admin_add_shows_the_new_key_once(clinic, admin_client):
    response = admin_client.post(
        "/admin/clinic/apiclient/add/",
        {"name": "Via admin", "clinics": [str(clinic.pk)], "revoked_at_0": "", "revoked_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    client = ApiClient.objects.get(name="Via admin")
    shown = [str(m) for m in response.context["messages"]]
    key = next(m for m in shown if "shown once" in m).rsplit(" ", 1)[-1]
    assert client.key_hash == hash_key(key)


def test_the_admin_grants_a_whole_organisation(clinic, admin_client):
    """The admin's client form grants organisations as create_api_client --organisation does: every clinic of
    it, a sister site added later included."""
    from tests.factories import ClinicFactory

    response = admin_client.post(
        "/admin/clinic/apiclient/add/",
        {"name": "Org-wide", "organisations": [str(clinic.organisation_id)], "revoked_at_0": "", "revoked_at_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    client = ApiClient.objects.get(name="Org-wide")
    assert list(client.organisations.all()) == [clinic.organisation] and not client.clinics.exists()
    key = next(str(m) for m in response.context["messages"] if "shown once" in str(m)).rsplit(" ", 1)[-1]
    sister = ClinicFactory(code="sister", name="Sister site", organisation=clinic.organisation)
    ClinicFactory(code="elsewhere", name="Elsewhere")

    listed = Client().get("/api/v1/clinics/", HTTP_AUTHORIZATION=f"Token {key}")
    assert listed.status_code == 200
    assert {row["code"] for row in listed.json()["results"]} == {clinic.code, sister.code}
