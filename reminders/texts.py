"""Checks on the texts an administrator writes: valid template syntax, and no clinical word in an SMS.

Used by the template model's validation and again at send time; it reads the
catalogue (for the forbidden names) but nothing of the reminders' own models.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from django.template import Engine, TemplateSyntaxError

from clinic.models import Condition, Medication, ProcedureType
from scheduler import versioned

SMS_MAX_SEGMENTS = 3  # longer texts cost more and arrive split; carriers cap concatenation anyway

# GSM 03.38: the default alphabet (one septet each) and its extension table (an escape plus one: two).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


# Look-alikes in the GSM alphabet for characters that would switch a whole text to UCS-2 (70 characters a
# part instead of 160): typographic quotes, dashes and spaces, as providers' "smart encoding" folds them.
_GSM7_LOOK_ALIKES = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u02bc\u2039\u203a", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f", " "),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
        "\u2026": "...",
        "\u2022": "-",
        "\u00b7": "-",
        # Latin letters with a stroke or no dot, which no accent stripping reaches (a clinic in Łódź, in Iğdır)
        **{"Ł": "L", "ł": "l", "ı": "i", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "Ŧ": "T", "ŧ": "t", "ŀ": "l"},
        **{"Œ": "OE", "œ": "oe", "Þ": "Th", "þ": "th", "Ð": "D", "ð": "d", "ĸ": "k"},
    }
)


GSM7 = GSM7_BASIC | GSM7_EXTENSION


def _gsm7(text: str) -> bool:
    return GSM7.issuperset(text)


def sms_fold(text: str) -> str:
    """`text` with each character the GSM alphabet lacks replaced by its look-alike there, where it has one: a
    typographic quote or dash by the plain one, an accented letter by the letter without its accent (í → i,
    ç → c; é, ñ, ü and the others the alphabet has stay). One such character (a clinic named "Clínica", a
    curly apostrophe) would otherwise send the whole text as UCS-2, at 67 characters a part, and a care text
    that fits in two parts would need four. A text with a character that has no look-alike (an emoji, another
    script) goes as UCS-2 anyway, so it is kept as written (its accents joined to their letters, as NFC writes
    them: the same text, in fewer UTF-16 units)."""
    if _gsm7(text):
        return text
    # An accent typed as a combining mark (the decomposed form some keyboards and macOS produce: "i" + U+0301) is
    # joined to its letter first, so that the letter folds as the same letter typed precomposed does.
    composed = unicodedata.normalize("NFC", text)
    folded = []
    for ch in composed.translate(_GSM7_LOOK_ALIKES):
        if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
            folded.append(ch)
            continue
        bare = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        if not (bare and _gsm7(bare)):
            return composed
        folded.append(bare)
    return "".join(folded)


def sms_units(text: str) -> tuple[int, str]:
    """How long `text` is as a carrier counts it, and in which encoding: GSM-7 septets (an extension character
    costs two), or UTF-16 units once any other character switches the whole text to UCS-2 (an emoji is two)."""
    if _gsm7(text):
        return len(text) + sum(map(text.count, GSM7_EXTENSION)), "GSM-7"  # an extension character takes two
    return len(text.encode("utf-16-le")) // 2, "UCS-2"


def sms_segments(text: str) -> tuple[int, str]:
    """How many segments a carrier bills `text` as, and in which encoding ("GSM-7" or "UCS-2").

    GSM-7: 160 septets alone, 153 per part once concatenated (the header takes 7). UCS-2: 70 UTF-16 units
    alone, 67 per part. Parts are filled as carriers split a text: a character of two (a GSM-7 escape and its
    extension character, the euro sign; a UTF-16 surrogate pair, an emoji) is never split across two parts, so one
    that would straddle a part's end goes whole to the next part, and the text may take a part more than its length
    divided by 153 or 67.
    """
    units, encoding = sms_units(text)
    single, part = (160, 153) if encoding == "GSM-7" else (70, 67)
    if units <= single:
        return (1 if units else 0), encoding
    if units == len(text):  # every character one septet or one unit (the usual case): no pair to keep whole
        return -(-units // part), encoding
    gsm7 = encoding == "GSM-7"
    parts, room = 1, part
    for ch in text:
        size = 2 if (ch in GSM7_EXTENSION if gsm7 else ord(ch) > 0xFFFF) else 1
        if size > room:
            parts, room = parts + 1, part
        room -= size
    return parts, encoding


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
EXTRA_FORBIDDEN = (
    "retinoid",
    "retinol",
    "retin-a",
    "tretinoin",
    "botulinum",
    "toxin",
    "accutane",
    "steroid",
    "antibiotic",
    "anticoagulant",
    "blood thinner",
)


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


@dataclass(frozen=True)
class _ForbiddenTerms:
    terms: tuple[str, ...]
    any_of: re.Pattern  # one pass over a text: does it hold any of them at all?


# A term counts in the plural too ("retinoids", "fillers", "blood thinners"), as a whole word either way.
_PLURAL = r"(?:s|es)?(?!\w)"


def _forbidden_terms() -> _ForbiddenTerms:
    """Procedure, drug and condition names and codes, with their aliases (Botox, Retin-A).

    Checked for every SMS sent, so kept per process under the configuration version (scheduler/versioned.py),
    which triggers on the three catalogue tables raise on any write: a new name counts from the next check
    (a batch of sends reads the version once, so from the next batch).
    """
    return versioned.cached("sms-forbidden-terms", _read_forbidden_terms)


def _read_forbidden_terms() -> _ForbiddenTerms:
    terms: set[str] = set(EXTRA_FORBIDDEN)
    for model in (ProcedureType, Medication, Condition):
        for code, name in model.objects.values_list("code", "name"):
            terms.add(code.replace("_", " "))
            terms |= _name_terms(name)
    kept = tuple(sorted({t.strip().lower() for t in terms if len(t.strip()) >= 4}))
    return _ForbiddenTerms(kept, re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, kept)) + r")" + _PLURAL))


def clinical_terms_in(text: str) -> list[str]:
    """The diagnosis, procedure and drug names (and aliases) `text` contains, in the singular or the plural."""
    lowered = text.lower()
    forbidden = _forbidden_terms()
    if forbidden.any_of.search(lowered) is None:
        return []  # the usual case: one search, not one per term
    return [t for t in forbidden.terms if re.search(rf"(?<!\w){re.escape(t)}{_PLURAL}", lowered)]


def sms_words_problem(text: str) -> str:
    """Why `text` may not go by SMS for what it says (a diagnosis, procedure or drug named in it), or ''."""
    found = clinical_terms_in(text)
    if found:
        return (
            "An SMS must not name a diagnosis, procedure or drug (it can be read by anyone who sees "
            f"the phone); remove: {', '.join(found)}."
        )
    return ""


def sms_length_problem(text: str) -> str:
    """Why `text`, as rendered, is too long to go by SMS, or ''."""
    segments, encoding = sms_segments(sms_fold(text))  # as it will go (content.render_message folds it)
    if segments > SMS_MAX_SEGMENTS:
        return (
            f"An SMS may take at most {SMS_MAX_SEGMENTS} segments (459 plain characters, fewer with accents "
            f"outside the GSM alphabet or emoji); this one takes {segments} ({encoding}, {len(text)} characters)."
        )
    return ""


def sms_text_problem(text: str) -> str:
    """Why `text` may not go by SMS (a clinical name in it, or too long), or '': checked on every text as it goes.
    A template is held to the words as written and to the length as rendered (reminders.fit)."""
    return sms_words_problem(text) or sms_length_problem(text)
