"""Genres a label may name, and the cues by which a document shows its genre whatever it calls
itself: a letter's salutation and closing, a paper's abstract and references, a resume's
experience and education sections, a contract's "hereby" and "the parties", a receipt's "cash"
and "change", a statement's opening and closing balances.

General knowledge of how these genres are written, not fitted to any dataset. A label takes a
genre when its name, or a kind its description names or enumerates, is one of the genre's names
("A letter, memo, e-mail or press release" -> correspondence). Cues are matched on the
normalized text (text.normalize: lower case, no accents), line by line where a cue is a line of
its own (a heading, a salutation).
"""

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from backend.backends.local.text import normalize

CUE_CHARS = 20000  # where cues are looked for: the first pages


WEAK = 0.5  # weight of a cue marked "~": common in the genre, but seen in others too


@dataclass(frozen=True)
class Genre:
    names: frozenset[str]  # name terms (lexicon.name_term: stemmed word, joined phrase)
    cues: tuple[tuple[re.Pattern, float], ...]


def _genre(names: list[str], cues: list[str]) -> Genre:
    from backend.backends.local.lexicon import name_term  # lexicon imports nothing from here

    return Genre(
        frozenset(name_term(n) for n in names),
        tuple(
            (re.compile(c.lstrip("~"), re.MULTILINE), WEAK if c.startswith("~") else 1.0)
            for c in cues
        ),
    )


_HEADING = r"^\s*(?:[0-9ivx]+\.?\s*)?"  # "1. Introduction", "II Introduction"
GENRES: dict[str, Genre] = {
    "correspondence": _genre(
        ["letter", "memo", "memorandum", "email", "e-mail", "correspondence", "press release"],
        [
            r"^\s*dear\b|\bto whom it may concern\b",
            r"^\s*(?:yours )?(?:sincerely|faithfully|truly|respectfully|cordially)\b",
            r"^\s*(?:best|kind|warm|with kind) regards\b",
            r"~^\s*(?:to|from)\s*:",
            r"~^\s*(?:subject|re|cc|sent)\s*:",
            r"^\s*(?:memo|memorandum)\b",
            r"for immediate release",
            r"~\b(?:enclosures?|encl)\b",
        ],
    ),
    "paper": _genre(
        ["research paper", "paper", "article", "white paper", "whitepaper", "thesis", "study"],
        [
            _HEADING + r"abstract\b",
            _HEADING + r"introduction\s*$",
            _HEADING + r"(?:references|bibliography|works cited)\s*$",
            r"\bet al\b",
            r"\bdoi\b|\barxiv\b",
            _HEADING + r"(?:keywords|key words|index terms)\b",
            # The abstract's heading in French, Spanish, German, Italian, Dutch: "Résumé. Une ..."
            r"^\s*(?:resume|resumen|zusammenfassung|sommario|samenvatting|riassunto)\s*[.:]\s+\w",
            r"\b(?:in this|this) (?:paper|article|thesis|dissertation)\b",
            r"~\bwe (?:propose|present|show|describe|introduce|study)\b",
            _HEADING + r"(?:conclusions?|discussion|related work|methodology)\s*$",
            r"~\[\d{1,3}\]",
        ],
    ),
    "standard": _genre(
        ["standard", "technical standard", "specification", "code of practice", "regulation"],
        [
            r"~\bshall\b",
            _HEADING + r"scope\s*$",
            r"\bnormative\b",
            r"~\brequirements?\b",
            r"\bthis (?:standard|specification|code|document)\b",
            r"~\b(?:compliance|conformance|conform)\b",
            r"^[ \t]*\d+\.\d+(?:\.\d+)?[ \t]+[a-z]{4,}[a-z ]*$",  # "4.2 Scope of work", not "1.00 kg"
        ],
    ),
    "manual": _genre(
        [
            "manual",
            "product manual",
            "user manual",
            "guide",
            "user guide",
            "tutorial",
            "handbook",
            "cheat sheet",
            "cheatsheet",
        ],
        [
            r"\btable of contents\b|^\s*contents\s*$",
            r"^\s*chapter\s+\d",
            r"\bstep \d\b",
            r"\b(?:figure|fig) \d",
            r"~\bclick\b",
            r"~\b(?:configure|configuration|install|installation|setup)\b",
            r"~\byou (?:can|will|should|must|may)\b",
            r"^\s*(?:note|tip|warning|caution)\b",
            r"~\b(?:example|syntax|usage)\b",
            # A reference's section headings and code ("getContext( string contextId)").
            _HEADING + r"(?:parameters|arguments|methods|attributes|properties|return values?)\s*$",
            r"~\b[a-z_]\w*\(\s*(?:[a-z_]\w*\s+[a-z_]\w*\s*,?\s*)*\)",
        ],
    ),
    "resume": _genre(
        ["resume", "cv", "curriculum vitae", "biography", "biographical sketch", "bio"],
        [
            _HEADING + r"(?:work |professional )?experience\s*$",
            _HEADING + r"education\s*$",
            _HEADING + r"(?:skills|technical skills|languages|certifications)\s*$",
            _HEADING + r"(?:objective|career objective|profile|summary)\s*$",
            r"\bemployment history\b|\bwork history\b",
            r"\blinkedin\b",
            r"\b(?:19|20)\d\d\s*(?:-|to)\s*(?:(?:19|20)\d\d|present|current)\b",
            r"\breferences (?:available|upon request)\b",
            r"~\b(?:bachelor|master|b\.?sc|m\.?sc|phd|degree)\b",
        ],
    ),
    "contract": _genre(
        ["contract", "agreement", "lease", "loan note", "license", "licence", "nda"],
        [
            r"\bhereby\b",
            r"\bwhereas\b",
            r"\b(?:the|both|all) parties\b",
            r"\bin witness whereof\b",
            r"\bgoverning law\b",
            r"\bterms and conditions\b",
            r"~\bshall\b",
            r"~\btermination\b",
            r"~\beffective date\b",
            r"~\bagrees?\b",
        ],
    ),
    "receipt": _genre(
        ["receipt", "till slip", "sales receipt", "payment confirmation", "proof of purchase"],
        [
            r"~\bthank you\b",
            r"~\bchange\b",
            r"~\bcash\b",
            r"~\bsub ?total\b",
            r"~\bpaid\b",
            r"~\b(?:visa|mastercard|amex|debit card|credit card)\b",
            r"\b(?:payment received|amount paid|total paid|tendered|tend)\b",
            # A line naming a receipt, not "Place of receipt:", "Payment due upon receipt".
            r"^\s*(?:(?!of |upon |on )[a-z]+ ){0,2}receipt\b(?!\s*(?:of\b|date\b|no\b|number\b|:))",
            r"\b(?:cashier|clerk)\b",
            r"\bchange due\b",
            r"\bitems? (?:sold|purchased)\b|\b(?:number|no) of items\b|\bitem count\b",
            r"\b(?:customer|merchant|cardholder) copy\b",
            r"\b(?:approval|auth|authorization) (?:code|#|no)\b",
            r"\bfolio\b",  # a hotel's receipt
            r"\bbalance\s*(?:due)?\s*:?\s*\$?0\.00\b",  # paid in full
            r"~\b(?:store|terminal|register)\b",
            r"~\brefunds?\b|\breturn policy\b",
        ],
    ),
    "bank": _genre(
        ["bank", "bank statement", "account statement", "bank check", "cheque", "banking"],
        [
            r"\b(?:opening|closing|available|previous|new) balance\b",
            r"\baccount (?:number|no)\b",
            r"~\bdeposits?\b",
            r"~\bwithdrawals?\b",
            r"\bstatement (?:period|date)\b",
            r"\b(?:iban|bic|swift|sort code|routing)\b",
            r"\bpay to the order of\b",
            r"~\bbank\b",
        ],
    ),
    "tax": _genre(
        ["tax", "tax form", "tax return", "irs"],
        [
            r"\binternal revenue service\b",
            r"\bdepartment of the treasury\b",
            r"\bomb no\b",
            r"\btax year\b",
            r"~\btaxpayer\b",
            r"\bpaperwork reduction act\b",
            r"~\bsocial security number\b",
            r"~\bwithh?olding\b",
            r"\bdepartment of revenue\b",
            r"\badjusted gross income\b",
        ],
    ),
}


def genres_named(terms: set[str]) -> set[str]:
    """The genres whose names are among these name terms."""
    return {name for name, genre in GENRES.items() if genre.names & terms}


@lru_cache(maxsize=256)
def _cue_counts(text: str) -> dict[str, float]:
    body = normalize(text[:CUE_CHARS])
    return {
        name: sum(weight for cue, weight in genre.cues if cue.search(body))
        for name, genre in GENRES.items()
    }


def genre_evidence(text: str, genres: set[str], scale: float) -> float:
    """In [0, 1]: how many distinct cues of the best of these genres the document shows."""
    if not genres:
        return 0.0
    counts = _cue_counts(text)
    return max(1 - math.exp(-counts[g] / scale) for g in genres)
