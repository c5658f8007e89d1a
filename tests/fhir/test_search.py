"""fhir.search without a database: tokens with systems, canonical ids, absolute references, _count and page."""

import uuid

import pytest
from django.http import QueryDict

from fhir import search
from fhir.mapping import compact
from fhir.search import SearchError

SYSTEM = "urn:clinic-scheduling:procedure"
BASE = "http://testserver/fhir/r4/"


def test_a_token_reads_its_own_system_or_none_and_drops_another():
    params = QueryDict(f"t={SYSTEM}|botox,|filler,http://snomed.info/sct|peel&t=botox")
    assert search.code_sets(params, "t", SYSTEM) == [{"botox", "filler"}, {"botox"}]
    assert search.codes(QueryDict("t=http://snomed.info/sct|botox"), "t", SYSTEM) == []


@pytest.mark.parametrize("value", [f"{SYSTEM}|", "|", "bot ox", f"{SYSTEM}|bot ox"])
def test_a_token_without_a_readable_code_is_refused(value):
    params = QueryDict(mutable=True)
    params["t"] = value
    with pytest.raises(SearchError) as refused:
        search.code_sets(params, "t", SYSTEM)
    assert refused.value.parameter == "t"


def test_only_the_canonical_spelling_of_an_id_is_ours():
    pk = uuid.uuid4()
    assert search.canonical_id(str(pk)) == pk
    for spelling in (str(pk).upper(), pk.hex, f"{{{pk}}}", f"urn:uuid:{pk}", ""):
        assert search.canonical_id(spelling) is None, spelling


def test_a_reference_on_this_servers_base_is_read_and_another_servers_matches_nothing():
    pk = uuid.uuid4()
    types = ("Schedule",)
    assert search.reference_id(f"{BASE}Schedule/{pk}", "s", types, base=BASE) == ("Schedule", pk)
    assert search.reference_id(f"http://other.example/fhir/Schedule/{pk}", "s", types, base=BASE) == ("Schedule", None)
    with pytest.raises(SearchError):
        search.reference_id(f"{BASE}Patient/{pk}", "s", types, base=BASE)


@pytest.mark.parametrize("raw, number", [("5", 5), ("0000000005", 5), ("200", 200), ("0" * 50 + "17", 17)])
def test_count_reads_leading_zeros_as_the_number(raw, number):
    assert search.count(QueryDict(f"_count={raw}")) == number


@pytest.mark.parametrize("raw", ["0", "201", "0000000201", "9" * 4000, "1e2", "-1", "٣"])
def test_count_out_of_range_or_not_digits_is_refused(raw):
    with pytest.raises(SearchError):
        search.count(QueryDict(f"_count={raw}"))


def test_a_huge_page_number_reads_as_past_any_search():
    assert search.page(QueryDict("page=" + "9" * 40)) > 10**11
    assert search.page(QueryDict("page=0002")) == 2


def test_compact_leaves_out_empty_values_at_any_depth_but_keeps_false_and_zero():
    value = {"a": [], "b": {}, "c": "", "d": None, "e": [{"f": []}, {"g": 0}], "h": False, "i": {"j": [""]}}
    assert compact(value) == {"e": [{"g": 0}], "h": False}
