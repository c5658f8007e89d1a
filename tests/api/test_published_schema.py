"""The published schema is made once a process and revalidated by ETag (api/published.py, docs/api.md).

What a caller receives is byte for byte what drf-spectacular's own view answers for the same request; only the
work behind it changed: each rendering is generated and rendered once, and a caller holding it gets a 304.
"""

import gzip
import hashlib
import json

import pytest
from django.test import Client, RequestFactory, override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView

from api import published
from tests.api.conftest import problem_of, session

pytestmark = pytest.mark.django_db

SCHEMA = "/api/v1/schema/"


@pytest.fixture(autouse=True)
def _forgotten():
    """Each test starts from a process that has made no rendering yet."""
    published.schema_renderings_forget()
    yield
    published.schema_renderings_forget()


@pytest.fixture
def generated(monkeypatch):
    """How many times the schema is generated (drf-spectacular's generator, however it is reached)."""
    calls = []
    original = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("request"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    return calls


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("", None),  # YAML, the default
        ("?format=json", None),
        ("?format=yaml", None),
        ("", "application/vnd.oai.openapi+json"),
        ("", "application/json; indent=2"),
        ("?lang=de", None),
        ("?format=json&lang=fr", None),
        ("?lang=zz-unknown", None),
    ],
)
def test_the_answer_is_drf_spectacular_s_own_byte_for_byte(query, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    theirs = SpectacularAPIView.as_view()(RequestFactory().get(SCHEMA + query, **headers))
    theirs.render()
    ours = Client().get(SCHEMA + query, **headers)
    again = Client().get(SCHEMA + query, **headers)  # from the process's rendering

    assert ours.status_code == again.status_code == 200
    assert ours.content == again.content == theirs.content
    for header in ("Content-Type", "Content-Disposition"):
        assert ours[header] == again[header] == theirs[header], header


def test_each_rendering_is_generated_once_a_process(generated):
    client = Client()
    yaml_answers = [client.get(SCHEMA) for _ in range(3)]
    json_answers = [client.get(SCHEMA, {"format": "json"}) for _ in range(3)]

    assert len(generated) == 1 and generated[0] is None  # one generation, for no request in particular
    assert len({a.content for a in yaml_answers}) == 1 and len({a.content for a in json_answers}) == 1
    assert json.loads(json_answers[0].content)["info"]["title"] == "Treatment-interval scheduling API"
    assert published.schema_rendering.cache_info().currsize == 2  # one rendering a format


def test_values_that_name_no_language_or_version_make_no_new_rendering(generated):
    """A caller cannot fill a process's memory or make it generate again by varying what it sends: `?lang=` and
    `?version=` are not read, a JSON indent is one of nine."""
    client = Client()
    first = client.get(SCHEMA, {"format": "json"})
    for n in range(20):
        language = ("de", "fr", f"zz-{n}")[n % 3]
        answer = client.get(SCHEMA, {"format": "json", "lang": language, "version": f"v{n}"})
        assert answer.content == first.content
    assert json.loads(first.content)["info"]["version"] == "1.0.0"  # drf-spectacular's view wrote "1.0.0 (v0)"
    for indent in ("2", "02", "99", "-1", "x"):
        assert client.get(SCHEMA, HTTP_ACCEPT=f"application/json; indent={indent}").status_code == 200

    assert len(generated) == 1
    assert published.schema_rendering.cache_info().currsize <= 1 + 3  # the first, indents 2, 8 and 4 (the default)


def test_the_etag_is_the_bytes_hash_and_a_caller_holding_it_gets_a_304():
    client = Client()
    answer = client.get(SCHEMA)
    etag = answer["ETag"]
    as_json = client.get(SCHEMA, {"format": "json"})

    assert etag == f'"{hashlib.sha256(answer.content).hexdigest()}"'
    assert as_json["ETag"] != etag  # each rendering its own tag
    assert answer["Cache-Control"] == as_json["Cache-Control"] == "no-cache"  # kept, but asked about each time
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*", f" {etag} ,"):
        unchanged = client.get(SCHEMA, HTTP_IF_NONE_MATCH=header)
        assert unchanged.status_code == 304, header
        assert unchanged.content == b"" and unchanged["ETag"] == etag and unchanged["Cache-Control"] == "no-cache"
    for header in (as_json["ETag"], '"other"', "not-a-tag", etag.strip('"'), ""):
        changed = client.get(SCHEMA, HTTP_IF_NONE_MATCH=header)
        assert changed.status_code == 200 and changed.content == answer.content, header


def test_a_caller_that_accepts_gzip_gets_the_same_bytes_compressed_with_their_own_tag():
    client = Client()
    plain = client.get(SCHEMA, {"format": "json"})
    compressed = client.get(SCHEMA, {"format": "json"}, HTTP_ACCEPT_ENCODING="br, gzip, deflate")

    assert compressed.status_code == 200 and compressed["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain
    assert gzip.decompress(compressed.content) == plain.content
    assert len(compressed.content) * 5 < len(plain.content)
    assert compressed["ETag"] == f'"{hashlib.sha256(compressed.content).hexdigest()}"' != plain["ETag"]
    assert compressed["Content-Type"] == plain["Content-Type"]
    for answer in (plain, compressed):
        assert {"Accept", "Accept-Encoding"} <= {v.strip() for v in answer["Vary"].split(",")}
    held = client.get(SCHEMA, {"format": "json"}, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=compressed["ETag"])
    assert held.status_code == 304 and held["ETag"] == compressed["ETag"] and held.content == b""
    # The plain copy's tag names another representation: the compressed one is sent.
    other = client.get(SCHEMA, {"format": "json"}, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=plain["ETag"])
    assert other.status_code == 200 and other["Content-Encoding"] == "gzip"


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("GZIP;q=0.5", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("br;q=1, *;q=0.1", True),
        (None, False),
        ("", False),
        ("identity", False),
        ("br, deflate", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("gzip;q=0, *", False),  # named, it is refused whatever * says
        ("*;q=0", False),
        ("gzip;q=lots", False),
        (",,, ;;; ,", False),
    ],
)
def test_which_accept_encoding_accepts_gzip(header, accepted):
    assert published.gzip_accepted(header) is accepted
    headers = {} if header is None else {"HTTP_ACCEPT_ENCODING": header}
    answer = Client().get(SCHEMA, **headers)
    assert answer.status_code == 200 and (answer.get("Content-Encoding") == "gzip") is accepted


def test_head_answers_the_headers_without_the_body():
    client = Client()
    got = client.get(SCHEMA)
    head = client.head(SCHEMA)
    assert head.status_code == 200 and head.content == b""
    assert head["ETag"] == got["ETag"] and head["Content-Type"] == got["Content-Type"]


def test_a_settings_change_drops_every_rendering(generated):
    client = Client()
    client.get(SCHEMA)
    client.get(SCHEMA, {"format": "json"})
    with override_settings(BOOKING_SEARCH_DAYS=91):  # any setting: the schema reads some, tests override them
        assert published.schema_rendering.cache_info().currsize == 0
        client.get(SCHEMA)
    client.get(SCHEMA)

    assert len(generated) == 3  # before, during, and after the override


def test_a_signed_in_staff_member_gets_the_same_bytes_as_anyone(receptionist):
    """Nothing of the caller is in it: a session (or an API key) changes neither the body nor its tag."""
    anonymous = Client().get(SCHEMA)
    staff = session(receptionist).get(SCHEMA)
    assert staff.status_code == 200
    assert (staff.content, staff["ETag"]) == (anonymous.content, anonymous["ETag"])


@override_settings(API_THROTTLE_RATE="2/min")
def test_the_schema_is_still_throttled_per_address():
    client = Client(REMOTE_ADDR="198.51.100.77")
    statuses = [client.get(SCHEMA).status_code, client.get(SCHEMA, HTTP_IF_NONE_MATCH="*").status_code]
    refused = client.get(SCHEMA)
    assert statuses == [200, 304]
    assert problem_of(refused, 429)["code"] == "throttled"  # in JSON, though the schema's default format is YAML
    assert int(refused["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("post", {}, 405),
        ("delete", {}, 405),
        ("get", {"HTTP_ACCEPT": "text/html"}, 406),
        ("get", {"HTTP_ACCEPT": "application/xml"}, 406),
    ],
)
def test_a_refusal_is_a_json_problem_document(method, headers, status):
    problem_of(getattr(Client(), method)(SCHEMA, **headers), status)
