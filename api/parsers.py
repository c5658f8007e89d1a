"""The only request body format: JSON, with a clear message when it is not.

Strings in a body are also checked here, once for every field: a NUL
character (which PostgreSQL refuses in text) or a lone surrogate (which is
not Unicode text and cannot be stored or sent back) is a 400 naming the
field, before any serializer or service sees it; so is a field an object
names twice (`{"first_name": "Ann", "first_name": "Bob"}`), as a query
parameter given twice is.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from api.fields import JSON_WHITESPACE
from core.plain_text import storable_problem

BYTE_ORDER_MARK = "\ufeff"
GIVE_ONCE = "Give this field once."


class _TooManyDigits(ValueError):
    """A whole number longer than Python converts (sys.get_int_max_str_digits()): said in the API's words."""


def _integer(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:
        raise _TooManyDigits from None


class _Repeated(dict):
    """An object of the body that names a field more than once (RFC 8259: names SHOULD be unique; software reads
    such an object differently, the first, the last or an error): the names, refused by `repeated_errors`."""

    repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    repeated = _Repeated(found)
    repeated.repeated = tuple(name for name, count in Counter(name for name, _ in pairs).items() if count > 1)
    return repeated


class StrictJSONParser(parsers.JSONParser):
    """JSON with no NaN/Infinity (not JSON), no field named twice in an object, with the position of a syntax error,
    and text that can be stored. What the parser cannot read is said in the API's words, never Python's."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The request body is not UTF-8 encoded JSON.")
        if text.startswith(BYTE_ORDER_MARK):  # RFC 8259 8.1: must not be sent; refused, not guessed past
            raise ParseError("The request body starts with a byte-order mark (U+FEFF): send the JSON without one.")
        # Only JSON's own whitespace: str.strip() would also drop U+001C..U+001F and read a body of them as {}.
        if not text.strip(JSON_WHITESPACE):
            return {}  # an empty body is an empty object; required fields then say what is missing

        def refuse_constant(name):
            raise ValueError(f"{name} is not valid JSON")

        try:
            data = json.loads(text, parse_constant=refuse_constant, parse_int=_integer, object_pairs_hook=_object)
        except RecursionError:
            raise ParseError("The JSON body is nested too deeply.")
        except _TooManyDigits:
            raise ParseError(
                f"The request body holds a whole number of more than {sys.get_int_max_str_digits()} digits: "
                "no field takes one."
            )
        except ValueError as error:
            raise ParseError(f"The request body is not valid JSON: {error}")
        errors = text_errors(data)
        for where, messages in repeated_errors(data).items():
            errors.setdefault(where, []).extend(messages)
        if errors:
            raise ValidationError(errors)
        return data


def repeated_errors(data) -> dict[str, list[str]]:
    """`{dotted.path: [GIVE_ONCE]}` for every field an object of `data` names more than once (a name that is not
    storable text is not echoed: text_errors refuses it)."""
    errors: dict[str, list[str]] = {}
    stack = [("", data)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            for name in getattr(item, "repeated", ()):
                if not storable_problem(name):
                    errors[f"{where}.{name}" if where else name] = [GIVE_ONCE]
            stack.extend((f"{where}.{key}" if where else key, value) for key, value in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}.{index}" if where else str(index), value) for index, value in enumerate(item))
    return errors


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
