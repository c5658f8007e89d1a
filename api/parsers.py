"""The only request body format: JSON, with a clear message when it is not."""
from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class StrictJSONParser(parsers.JSONParser):
    """JSON with no NaN/Infinity (not JSON) and with the position of a syntax error."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The request body is not UTF-8 encoded JSON.")
        if not text.strip():
            return {}  # an empty body is an empty object; required fields then say what is missing

        def refuse_constant(name):
            raise ValueError(f"{name} is not valid JSON")

        try:
            return json.loads(text, parse_constant=refuse_constant)
        except RecursionError:
            raise ParseError("The JSON body is nested too deeply.")
        except ValueError as error:
            raise ParseError(f"The request body is not valid JSON: {error}")
