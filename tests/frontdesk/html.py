"""Reading rendered pages in tests: the text inside the element with a given id (stdlib only)."""

from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _ById(HTMLParser):
    def __init__(self, wanted: str) -> None:
        super().__init__(convert_charrefs=True)
        self.wanted = wanted
        self.depth = 0
        self.found = False
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            if tag not in VOID:
                self.depth += 1
        elif dict(attrs).get("id") == self.wanted and not self.found:
            self.found = True
            self.depth = 0 if tag in VOID else 1

    def handle_endtag(self, tag):
        if self.depth and tag not in VOID:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def text_by_id(html: str | bytes, element_id: str) -> str:
    """Whitespace-normalised text of the element; AssertionError when there is none."""
    parser = _ById(element_id)
    parser.feed(html.decode() if isinstance(html, bytes) else html)
    assert parser.found, f"no element with id={element_id!r}"
    return " ".join(" ".join(parser.parts).split())


def field_error(response, field_id: str) -> str:
    """The error shown next to the field with this id (e.g. 'id_phone')."""
    return text_by_id(response.content, f"{field_id}-error")


def squash(response) -> str:
    return " ".join(response.content.decode().split())
