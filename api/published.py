"""The OpenAPI schema as served at /api/v1/schema/: made once a process, not once a request.

drf-spectacular's view builds the whole schema for every request (about 85 ms of CPU on a fast machine) and
renders it again (YAML, the default format, 120-180 ms more): on a public endpoint that anyone may call 300 times
a minute from one address, that is more than half a core. The schema is the same for every caller and changes
only with a deploy (it reads no data), so each process generates it once and keeps each rendering: one per format
(YAML or JSON, by `?format=` or Accept) and JSON indent (0-8, by Accept's `indent=`), a few at most, each under a
megabyte. Any settings change (tests override them) drops them.

Each answer carries a strong ETag, a hash of its bytes, and `Cache-Control: no-cache`: a caller that keeps a copy
asks with If-None-Match and gets a 304 without the body, and sees a deploy's schema at once.

`?version=` is not read (drf-spectacular would write its value into `info.version`: the version is in the path),
nor `?lang=` (drf-spectacular's view would translate the texts Django REST framework writes itself: the schema has
none of them, so every language gave the same bytes; tests/api/test_published_schema.py compares them).
A refusal (too many requests, a method or an Accept it does not serve) is a problem document in JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse, HttpResponseNotModified
from django.utils import translation
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer

from core.etags import entity_tags


@dataclass(frozen=True)
class Rendering:
    content: bytes
    content_type: str
    etag: str


class PublishedSchemaApi(SpectacularAPIView):
    """The schema, from this process's renderings (module docstring)."""

    @extend_schema(exclude=True)  # as drf-spectacular's own view (SERVE_INCLUDE_SCHEMA is off)
    def get(self, request, *args, **kwargs):
        renderer = request.accepted_renderer
        indent = renderer.get_indent(request.accepted_media_type, {}) if isinstance(renderer, JSONRenderer) else None
        rendering = schema_rendering(type(renderer), indent)
        if _unchanged_for(request, rendering.etag):
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(rendering.content, content_type=rendering.content_type)
            response["Content-Disposition"] = f'inline; filename="{self._get_filename(request, None)}"'
        response["ETag"] = rendering.etag
        response["Cache-Control"] = "no-cache"
        return response

    def handle_exception(self, exc):
        """A refusal (429, 405, 406) is a problem document in JSON, as everywhere in the API: rendered by the
        schema's renderer it was YAML under `application/problem+json`."""
        response = super().handle_exception(exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return response


@lru_cache(maxsize=8)
def schema_rendering(renderer_class: type, indent: int | None) -> Rendering:
    """The schema rendered by `renderer_class` (a JSON one at `indent`): made on first use."""
    renderer = renderer_class()
    media_type = renderer.media_type if indent is None else f"{renderer.media_type}; indent={indent}"
    content = renderer.render(_schema(), media_type, {})
    content_type = (
        renderer.media_type if renderer.charset is None else f"{renderer.media_type}; charset={renderer.charset}"
    )
    return Rendering(content, content_type, f'"{hashlib.sha256(content).hexdigest()}"')


@lru_cache(maxsize=1)
def _schema() -> dict:
    """The schema as drf-spectacular's generator makes it, in the site's language, for no request in particular: it
    reads no data and nothing of the request (tests/api/test_published_schema.py compares it with drf-spectacular's
    own view's answers)."""
    generator = spectacular_settings.DEFAULT_GENERATOR_CLASS(urlconf=spectacular_settings.SERVE_URLCONF)
    with translation.override(settings.LANGUAGE_CODE):
        return generator.get_schema(request=None, public=spectacular_settings.SERVE_PUBLIC)


def _unchanged_for(request, etag: str) -> bool:
    """Whether If-None-Match names this rendering (weak comparison, RFC 9110 13.1.2) or is "*"; a header that is
    not a list of entity tags is ignored."""
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(tag.removeprefix("W/") == etag for tag in entity_tags(header) or [])


@receiver(setting_changed)
def schema_renderings_forget(**kwargs) -> None:
    """Drops every rendering (on any settings change: tests override settings, the schema reads some)."""
    schema_rendering.cache_clear()
    _schema.cache_clear()
