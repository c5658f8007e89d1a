"""The shipped default rules as an engine RuleBook, read straight from fixtures/rules.json.

Engine tests use it so that they pin the defaults the product ships, without a database.
"""

import json
from functools import lru_cache
from pathlib import Path

from scheduler import rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@lru_cache
def default_rulebook() -> rules.RuleBook:
    data = json.loads((FIXTURES / "rules.json").read_text(encoding="utf-8"))
    catalogue = json.loads((FIXTURES / "catalogue.json").read_text(encoding="utf-8"))
    names = {
        row["code"]: row["name"]
        for key in ("procedures", "medications", "conditions", "areas")
        for row in catalogue[key]
    }
    intervals = [
        rules.IntervalRule(
            id=row["key"],
            later_procedure=row["later"],
            gap_value=row["gap"][0],
            gap_unit=row["gap"][1],
            severity=row["severity"],
            earlier_procedure=row.get("earlier_procedure"),
            earlier_medication=row.get("earlier_medication"),
            source=row["source"],
        )
        for row in data["intervals"]
    ]
    contraindications = [
        rules.ContraindicationRule(
            id=row["key"],
            procedure=row["procedure"],
            severity=row["severity"],
            condition=row.get("condition"),
            medication=row.get("medication"),
            active_only=row["applies_to"] == "active",
            area_specific=row["area_specific"],
            source=row["source"],
        )
        for row in data["contraindications"]
    ]
    return rules.RuleBook(intervals, contraindications, names)
