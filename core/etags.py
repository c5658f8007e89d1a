"""Reading an If-Match header (RFC 9110 13.1.1): "*", or a comma-separated list of entity tags, `"…"` or `W/"…"`,
where empty list elements are ignored (5.6.1.2). Read in one pass, character by character: a header is the
client's, and a regular expression that backtracks over it would let a 70-byte header hold a worker for seconds."""

from __future__ import annotations


def entity_tags(header: str) -> list[str] | None:
    """The entity tags `header` lists, each as written (`"abc"` or `W/"abc"`), or None when it is not such a list
    (an unquoted tag, an unterminated quote, two tags without a comma between, or no tag at all)."""
    tags: list[str] = []
    position, end = 0, len(header)
    while True:
        while position < end and header[position] in " \t":
            position += 1
        if position == end:
            return tags or None
        if header[position] == ",":  # an empty element
            position += 1
            continue
        start = position
        if header.startswith("W/", position):
            position += 2
        if position == end or header[position] != '"':
            return None
        closing = header.find('"', position + 1)
        if closing < 0:
            return None
        tags.append(header[start : closing + 1])
        position = closing + 1
        while position < end and header[position] in " \t":
            position += 1
        if position < end and header[position] != ",":
            return None
