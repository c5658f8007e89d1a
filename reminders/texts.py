"""Checks on the texts an administrator writes: valid template syntax, and no clinical word in an SMS.

Used by the template model's validation and again at send time; it reads the
catalogue (for the forbidden names) but nothing of the reminders' own models.
"""
from __future__ import annotations

import re

from django.core.cache import cache
from django.template import Engine, TemplateSyntaxError

from clinic.models import Condition, Medication, ProcedureType

SMS_MAX_CHARS = 480  # three concatenated segments; longer texts cost more and arrive split

# Admin-edited texts are rendered by engines with no template loaders, so a
# template cannot {% include %} files from disk.
TEXT_ENGINE = Engine(autoescape=False)
HTML_ENGINE = Engine(autoescape=True)


# --- Checks used by the admin form and at send time ----------------------------------------------


def template_problem(text: str) -> str:
    """Why `text` is not a usable template, or ''."""
    if not text:
        return ""
    try:
        TEXT_ENGINE.from_string(text)
    except TemplateSyntaxError as exc:
        return f"Template error: {exc}"
    return ""


# Drug words the catalogue names only inside longer phrases ("Topical retinoid"), checked on their own.
EXTRA_FORBIDDEN = ("retinoid", "retinol", "retin-a", "tretinoin", "botulinum", "toxin", "accutane",
                   "steroid", "antibiotic", "anticoagulant", "blood thinner")


def _name_terms(name: str) -> set[str]:
    """A catalogue name and its readings: "Isotretinoin (Accutane)" gives both words;
    "Active (inflammatory) acne" gives "active acne" and "inflammatory acne"."""
    terms = {name}
    tail = re.match(r"^(.*?)\s*\(([^)]*)\)\s*$", name)
    if tail:  # a closing bracket holds aliases: "Botulinum toxin injection (Botox)"
        terms.add(tail.group(1))
        for alias in re.split(r"[/,]", tail.group(2)):
            terms.add(re.sub(r"^\s*e\.g\.\s*", "", alias))
    else:  # a bracket inside qualifies the next word: "Actinic (solar) keratosis"
        for inside in re.finditer(r"(\S+)\s*\(([^)]*)\)\s*(\S+)", name):
            terms.add(f"{inside.group(1)} {inside.group(3)}")
            terms.add(f"{inside.group(2)} {inside.group(3)}")
    return terms


FORBIDDEN_TERMS_KEY = "reminders:sms-forbidden-terms"


def _forbidden_terms() -> list[str]:
    """Procedure, drug and condition names and codes, with their aliases (Botox, Retin-A).

    Checked for every SMS sent, so kept in the cache (three catalogue reads per text
    were 7% of a worker's time); a catalogue change clears it (`forget_forbidden_terms`),
    and it expires after a minute in case a change bypassed the ORM.
    """
    return cache.get_or_set(FORBIDDEN_TERMS_KEY, _read_forbidden_terms, timeout=60)


def forget_forbidden_terms(**kwargs) -> None:
    """Signal receiver: a procedure, medication or condition was saved or deleted."""
    cache.delete(FORBIDDEN_TERMS_KEY)


def _read_forbidden_terms() -> list[str]:
    terms: set[str] = set(EXTRA_FORBIDDEN)
    for model in (ProcedureType, Medication, Condition):
        for code, name in model.objects.values_list("code", "name"):
            terms.add(code.replace("_", " "))
            terms |= _name_terms(name)
    return sorted({t.strip().lower() for t in terms if len(t.strip()) >= 4})


def sms_text_problem(text: str) -> str:
    """Why `text` may not go by SMS (a clinical name in it, or too long), or ''."""
    lowered = text.lower()
    found = [t for t in _forbidden_terms() if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", lowered)]
    if found:
        return ("An SMS must not name a diagnosis, procedure or drug (it can be read by anyone who sees "
                f"the phone); remove: {', '.join(found)}.")
    if len(text) > SMS_MAX_CHARS:
        return f"An SMS may be at most {SMS_MAX_CHARS} characters; this one has {len(text)}."
    return ""
