"""API-key authentication: `Authorization: Token <key>` for booking platforms.

Keys are looked up by their public prefix and compared by hash in constant
time; a revoked or unknown key is a 401. `last_used_at` is written at most
once a minute per client, so authentication adds no write to most requests.
A refused key counts against its address's anonymous rate (api.throttling):
past it the answer is a 429, so keys cannot be tried at line rate.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from api.throttling import count_refused_key
from clinic.models import ApiClient, hash_key
from core.compiled import CompiledQuery, columns, instances

LAST_USED_RESOLUTION = timedelta(minutes=1)

# Every request a platform makes starts here: compiled once per connection (core.compiled).
_BY_PREFIX = CompiledQuery(
    lambda prefix: ApiClient.objects.filter(key_prefix=prefix).order_by().values_list(*columns(ApiClient))
)


def _client_by_prefix(prefix: str) -> ApiClient | None:
    found = instances(_BY_PREFIX.rows(prefix), ApiClient)  # the prefix is unique
    return found[0] if found else None


KEYWORD = "Token"


def authorization_words(request) -> list[bytes]:
    """The Authorization header's words as DRF reads them: its bytes (latin-1, as WSGI hands headers on) split at
    ASCII whitespace only, so U+00A0 or U+0085 inside a word leaves it one word. A header that is not latin-1 (only a
    test client can send one) has none."""
    try:
        return authentication.get_authorization_header(request).split()
    except UnicodeEncodeError:
        return []


def api_key_given(request) -> bool:
    """Whether the call names an API key (`Authorization: Token …`): the one reading of the header, for this
    authentication and for config/middleware.py's two-step check, which lets a keyed call through to it."""
    words = authorization_words(request)
    return bool(words) and words[0].lower() == KEYWORD.lower().encode()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = KEYWORD

    def authenticate(self, request):
        if not api_key_given(request):
            return None  # not ours: session auth may still apply
        try:
            return self._authenticate(authorization_words(request))
        except exceptions.AuthenticationFailed:
            count_refused_key(request)  # past the anonymous rate for its address: a 429 instead (api.throttling)
            raise

    def _authenticate(self, header: list[bytes]):
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Give the key as `Authorization: Token <key>`.")
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if not key.isprintable():  # a NUL byte would reach the database in the prefix look-up
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return self._client_for(key)

    def _client_for(self, key: str):
        prefix, _, _ = key.partition(".")
        client = _client_by_prefix(prefix) if prefix else None
        # Compare even when there is no client, so timing says nothing about which prefixes exist.
        expected = client.key_hash if client else hash_key("")
        if not hmac.compare_digest(expected, hash_key(key)) or client is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if client.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        now = timezone.now()
        if client.last_used_at is None or now - client.last_used_at >= LAST_USED_RESOLUTION:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
            client.last_used_at = now
        return (ApiClientUser(client), client)

    def authenticate_header(self, request):
        return self.keyword


class ApiClientUser:
    """Stands in for `request.user` when a booking platform calls: authenticated, never staff."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def __str__(self) -> str:
        return f"API client {self.client.name}"

    def get_username(self) -> str:
        return f"api:{self.client.name}"
