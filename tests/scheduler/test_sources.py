"""The repository cites its published sources (docs/sources.md), never files outside it, and docs/rules.md
lists every shipped rule as fixtures/rules.json has it."""

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES_MD = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
RULES_MD = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
RULES = json.loads((ROOT / "fixtures" / "rules.json").read_text(encoding="utf-8"))
CARE_TEXTS = json.loads((ROOT / "fixtures" / "care_texts.json").read_text(encoding="utf-8"))


def short_citations() -> dict[str, str]:
    """id -> the short citation docs/sources.md gives for it ("[001] Yazbek Artistry, microneedling care")."""
    found = re.findall(r"^- \*\*Short citation\*\*: `(\[(\d{3})\] [^`]+)`$", SOURCES_MD, flags=re.MULTILINE)
    return {source_id: citation for citation, source_id in found}


def sourced_rows() -> list[dict]:
    return (
        [r for r in RULES["intervals"] if r.get("basis", "sourced") == "sourced"]  # not the clinic-practice repeats
        + RULES["contraindications"]
        + [t for t in CARE_TEXTS["templates"] if t["origin"] == "sourced"]
    )


def test_each_source_has_title_publisher_date_link_and_short_citation():
    sections = re.split(r"^## ", SOURCES_MD, flags=re.MULTILINE)
    entries = {m.group(1): section for section in sections if (m := re.match(r"\[(\d{3})\] ", section))}

    assert sorted(entries) == ["000", "001", "002", "003"]
    for source_id, section in entries.items():
        for field in ("Title", "Publisher", "Date", "Link", "Short citation", "What we take from it"):
            assert f"- **{field}**" in section, (source_id, field)
        assert re.search(r"\*\*Link\*\*: <https://[^>]+>", section), source_id
        assert section.startswith(short_citations()[source_id] + "\n"), source_id  # the heading is the citation
    assert sorted(short_citations()) == sorted(entries)


@pytest.mark.parametrize("row", sourced_rows(), ids=lambda row: row["key"])
def test_every_shipped_citation_is_made_of_the_short_citations_of_docs_sources(row):
    citations = short_citations()
    assert row["source"].endswith(" (docs/sources.md)"), row["source"]
    parts = row["source"].removesuffix(" (docs/sources.md)").split("; ")

    assert parts and all(part in citations.values() for part in parts), row["source"]
    assert len(row["source"]) <= 200  # the model's max_length


def source_ids(text: str) -> list[str]:
    return re.findall(r"\[(\d{3})\]", text)


def rules_md_rows() -> dict[str, list[str]]:
    """key -> the cells of its row in a docs/rules.md table (rows start with the rule's key in backticks)."""
    rows = {}
    for line in RULES_MD.splitlines():
        if match := re.match(r"^\| `([a-z0-9_-]+)` \|(.*)\|$", line):
            assert match.group(1) not in rows, f"{match.group(1)} is listed twice"
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_the_rules_doc_lists_every_shipped_interval_rule_as_shipped():
    rows = rules_md_rows()
    for rule in RULES["intervals"]:
        assert rule["key"] in rows, f"docs/rules.md does not list {rule['key']}"
        _earlier, _later, gap, severity, sources = rows[rule["key"]]
        assert (gap, severity) == (f"{rule['gap'][0]} {rule['gap'][1]}", rule["severity"]), rule["key"]
        assert source_ids(sources) == source_ids(rule["source"]), rule["key"]


def test_the_rules_doc_lists_every_shipped_contraindication_as_shipped():
    rows = rules_md_rows()
    for rule in RULES["contraindications"]:
        assert rule["key"] in rows, f"docs/rules.md does not list {rule['key']}"
        _what, counts, severity, sources = rows[rule["key"]]
        if rule.get("medication"):
            expected = "a course covers the date"
        else:
            expected = "active" if rule["applies_to"] == "active" else "active or history"
            expected += ", in the treated area" if rule["area_specific"] else ""
        assert (counts, severity) == (expected, rule["severity"]), rule["key"]
        assert source_ids(sources) == source_ids(rule["source"]), rule["key"]


def test_the_rules_doc_lists_no_rule_that_does_not_ship():
    shipped = {rule["key"] for rule in RULES["intervals"] + RULES["contraindications"]}
    assert set(rules_md_rows()) == shipped


def test_clinic_texts_say_they_are_not_from_the_sources():
    for template in CARE_TEXTS["templates"]:
        if template["origin"] == "clinic":
            assert template["source"].startswith("Clinic template: "), template["key"]
            assert "not from the published sources" in template["source"], template["key"]


# Places that may still spell the old file paths, each for a reason.
OLD_PATH_ALLOWED = {
    "tests/scheduler/test_sources.py",  # this test
    "scheduler/defaults.py",  # recognises citations of earlier releases, to bring them up to date
    "tests/scheduler/test_defaults.py",  # ... and the tests of that
    "tests/reminders/test_content.py",
}
SKIP_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    "var",
    "__pycache__",
    "staticfiles",
    ".pytest_cache",
    ".hypothesis",
    "htmlcov",
}
TEXT_SUFFIXES = {".py", ".md", ".json", ".html", ".txt", ".toml", ".ini", ".cfg", ".yml", ".yaml", ".sh", ""}


def test_nothing_in_the_repository_cites_files_outside_it():
    offenders = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(folder) / name
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix not in TEXT_SUFFIXES or rel in OLD_PATH_ALLOWED:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if "../shared/" in line or "reference/seeds" in line:
                    offenders.append(f"{rel}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
