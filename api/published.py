"""The OpenAPI schema as served at /api/v1/schema/: made once a process, not once a request.

drf-spectacular's view builds the whole schema for every request (about 85 ms of CPU on a fast machine) and
renders it again (YAML, the default format, 120-180 ms more): on a public endpoint that anyone may call 300 times
a minute from one address, that is more than half a core. The schema is the same for every caller and changes
only with a deploy (it reads no data), so each process generates it once and keeps each rendering: one per format
(YAML or JSON, by `?format=` or Accept) and JSON indent (0-8, by Accept's `indent=`), a few at most, each under a
megabyte. Any settings change (tests override them) drops them.

Each answer carries a strong ETag, a hash of its bytes, and `Cache-Control: no-cache`: a caller that keeps a copy
asks with If-None-Match and gets a 304 without the body, and sees a deploy's schema at once. A caller that accepts
gzip (Accept-Encoding) gets the rendering compressed once (a twentieth of the bytes), with its own ETag; answers
vary on Accept and Accept-Encoding. (Compression gives nothing away here: the schema holds no secret and echoes
nothing of the request.)

`?version=` is not read (drf-spectacular would write its value into `info.version`: the version is in the path),
nor `?lang=` (drf-spectacular's view would translate the texts Django REST framework writes itself: the schema has
none of them, so every language gave the same bytes; tests/api/test_published_schema.py compares them).
A refusal (too many requests, a method or an Accept it does not serve) is a problem document in JSON.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpResponse, HttpResponseNotModified
from django.utils import translation
from django.utils.cache import patch_vary_headers
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer

from core.etags import entity_tags


@dataclass(frozen=True)
class Representation:
    content: bytes
    etag: str  # strong: the hash of `content`

    @classmethod
    def of(cls, content: bytes) -> Representation:
        return cls(content, f'"{hashlib.sha256(content).hexdigest()}"')


@dataclass(frozen=True)
class Rendering:
    content_type: str
    plain: Representation
    gzipped: Representation


class PublishedSchemaApi(SpectacularAPIView):
    """The schema, from this process's renderings (module docstring)."""

    @extend_schema(exclude=True)  # as drf-spectacular's own view (SERVE_INCLUDE_SCHEMA is off)
    def get(self, request, *args, **kwargs):
        renderer = request.accepted_renderer
        indent = renderer.get_indent(request.accepted_media_type, {}) if isinstance(renderer, JSONRenderer) else None
        rendering = schema_rendering(type(renderer), indent)
        compressed = gzip_accepted(request.headers.get("Accept-Encoding"))
        sent = rendering.gzipped if compressed else rendering.plain
        if _unchanged_for(request, sent.etag):
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(sent.content, content_type=rendering.content_type)
            response["Content-Disposition"] = f'inline; filename="{self._get_filename(request, None)}"'
            if compressed:
                response["Content-Encoding"] = "gzip"
        response["ETag"] = sent.etag
        response["Cache-Control"] = "no-cache"
        patch_vary_headers(response, ("Accept", "Accept-Encoding"))
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
    # mtime=0: the same bytes (and ETag) in every process of a deploy, whichever answers the revalidation.
    return Rendering(content_type, Representation.of(content), Representation.of(gzip.compress(content, mtime=0)))


@lru_cache(maxsize=1)
def _schema() -> dict:
    """The schema as drf-spectacular's generator makes it, in the site's language, for no request in particular: it
    reads no data and nothing of the request (tests/api/test_published_schema.py compares it with drf-spectacular's
    own view's answers)."""
    generator = spectacular_settings.DEFAULT_GENERATOR_CLASS(urlconf=spectacular_settings.SERVE_URLCONF)
    with translation.override(settings.LANGUAGE_CODE):
        return generator.get_schema(request=None, public=spectacular_settings.SERVE_PUBLIC)


def gzip_accepted(header: str | None) -> bool:
    """Whether an Accept-Encoding header accepts gzip (RFC 9110 12.5.3): named (or as x-gzip), else by `*`, with a
    weight above 0. Read element by element, no regular expression: a header is the client's."""
    weights: dict[str, float] = {}
    for element in (header or "").split(","):
        coding, _, parameters = element.partition(";")
        coding = coding.strip().lower()
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0  # not a weight: not an acceptance either
        if coding:
            weights.setdefault(coding, weight)
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


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
