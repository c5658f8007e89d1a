"""The only request body format: JSON, with a clear message when it is not.

Strings in a body are also checked here, once for every field: a NUL
character (which PostgreSQL refuses in text) or a lone surrogate (which is
not Unicode text and cannot be stored or sent back) is a 400 naming the
field, before any serializer or service sees it.
"""

from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from api.fields import JSON_WHITESPACE
from core.plain_text import storable_problem


class StrictJSONParser(parsers.JSONParser):
    """JSON with no NaN/Infinity (not JSON), with the position of a syntax error, and text that can be stored."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The request body is not UTF-8 encoded JSON.")
        # Only JSON's own whitespace: str.strip() would also drop U+001C..U+001F and read a body of them as {}.
        if not text.strip(JSON_WHITESPACE):
            return {}  # an empty body is an empty object; required fields then say what is missing

        def refuse_constant(name):
            raise ValueError(f"{name} is not valid JSON")

        try:
            data = json.loads(text, parse_constant=refuse_constant)
        except RecursionError:
            raise ParseError("The JSON body is nested too deeply.")
        except ValueError as error:
            raise ParseError(f"The request body is not valid JSON: {error}")
        errors = text_errors(data)
        if errors:
            raise ValidationError(errors)
        return data


def text_errors(data, path: str = "") -> dict[str, list[str]]:
    """`{dotted.path: [message]}` for every string in `data` (keys included) that is not storable text."""
    errors: dict[str, list[str]] = {}
    stack = [(path, data)]
    while stack:  # iterative: the parser has already bounded the depth, but this never recurses
        where, item = stack.pop()
        if isinstance(item, str):
            message = storable_problem(item)
            if message:
                errors.setdefault(where or "non_field_errors", []).append(message)
        elif isinstance(item, dict):
            for key, value in item.items():
                message = storable_problem(key)
                if message:
                    # The key itself is not echoed: it may not even be encodable in the answer.
                    errors.setdefault(where or "non_field_errors", []).append(f"A field name is refused: {message}")
                    continue
                stack.append((f"{where}.{key}" if where else key, value))
        elif isinstance(item, list):
            stack.extend((f"{where}.{index}" if where else str(index), value) for index, value in enumerate(item))
    return errors
