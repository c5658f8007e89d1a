"""Is this new registration someone the organisation already has? The matcher, pure and symmetric.

A likely duplicate has the same date of birth and a similar name, or the same phone (E.164) or
e-mail (case-insensitive). Names are compared normalised (case, accents, spacing, hyphens) with
rapidfuzz, so "José-María  Núñez" and "jose maria nunez" are the same name and "Olivia Benett" is
close to "Olivia Bennett". The selector that reads candidates is `clinic.selectors.duplicate_candidates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from rapidfuzz import fuzz

from core.text_match import normalise_name

# token_sort_ratio of two normalised full names (0-100): at or above this they are "similar". One
# typo or transposition passes ("Olivia Benett" 96, "Olivai Bennett" 93 against "Olivia Bennett"),
# two changes do not ("Olive Bennet" 84.6), nor another name ("Oliver Benson" 67). Only ever asked
# together with the same date of birth, so a near miss costs a question at the desk, not a merge.
NAME_SIMILARITY = 85
# Surnames this close, with one first name the start of the other ("Jo"/"Joanna"), are similar too.
SURNAME_SIMILARITY = 90


class MatchReason(StrEnum):
    """Why an existing record looks like the new one (the API's `reasons`)."""

    BIRTH_DATE_AND_NAME = "date_of_birth_and_name"
    PHONE = "phone"
    EMAIL = "email"


@dataclass(frozen=True)
class Identity:
    """What a registration says about who the patient is (phone in E.164, or empty)."""

    first_name: str
    last_name: str
    date_of_birth: date | None = None
    phone: str = ""
    email: str = ""


def normalise_email(value: str) -> str:
    return (value or "").strip().casefold()


def names_similar(a: Identity, b: Identity) -> bool:
    first_a, first_b = normalise_name(a.first_name), normalise_name(b.first_name)
    last_a, last_b = normalise_name(a.last_name), normalise_name(b.last_name)
    if not (first_a or last_a) or not (first_b or last_b):
        return False
    # Sorted tokens: a first and last name swapped ("Bennett Olivia") still match. Sorting alone fails when one typo
    # moves a word's place in the order ("Lukasz Nowak" and "Nowak Łukasz" sort apart: "lukasz" < "nowak" <
    # "łukasz" before the letters are made plain; "Morris" and "Norris" either side of the first name), so each
    # name is also compared in its own order, swapped, and with its spaces left out ("Mary-Jane", "Maryjane").
    whole_a, whole_b = f"{first_a} {last_a}", f"{first_b} {last_b}"
    swapped_a, swapped_b = f"{last_a} {first_a}", f"{last_b} {first_b}"
    scores = (
        fuzz.token_sort_ratio(whole_a, whole_b),
        fuzz.ratio(whole_a, whole_b),
        fuzz.ratio(whole_a, swapped_b),
        fuzz.ratio(swapped_a, whole_b),  # both ways: the matcher is symmetric
        fuzz.ratio(whole_a.replace(" ", ""), whole_b.replace(" ", "")),
        fuzz.ratio(whole_a.replace(" ", ""), swapped_b.replace(" ", "")),
        fuzz.ratio(swapped_a.replace(" ", ""), whole_b.replace(" ", "")),
    )
    if max(scores) >= NAME_SIMILARITY:
        return True
    shorter, longer = sorted((first_a, first_b), key=len)
    return bool(shorter) and longer.startswith(shorter) and fuzz.ratio(last_a, last_b) >= SURNAME_SIMILARITY


def match_reasons(new: Identity, existing: Identity) -> list[MatchReason]:
    """Why `existing` may be the same person as `new` (empty: not a candidate). Symmetric."""
    reasons = []
    if new.date_of_birth is not None and new.date_of_birth == existing.date_of_birth and names_similar(new, existing):
        reasons.append(MatchReason.BIRTH_DATE_AND_NAME)
    if new.phone and new.phone == existing.phone:
        reasons.append(MatchReason.PHONE)
    if normalise_email(new.email) and normalise_email(new.email) == normalise_email(existing.email):
        reasons.append(MatchReason.EMAIL)
    return reasons
