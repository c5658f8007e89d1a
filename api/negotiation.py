"""Content negotiation that ignores a `?format=` naming no format the operation has.

DRF reads `?format=` on every view (URL_FORMAT_OVERRIDE) and answers 404 when no renderer has that format: a
platform sending `?format=xml` to a list would be told the address does not exist. docs/api.md: parameters an
operation does not define are ignored; only the schema (`/api/v1/schema/?format=json|yaml`) defines `format`, and
there it still chooses.
"""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class IgnoreUnknownFormat(DefaultContentNegotiation):
    def filter_renderers(self, renderers, format):
        named = [renderer for renderer in renderers if renderer.format == format]
        return named or renderers  # no renderer of that format: the parameter means nothing here, negotiate on Accept
