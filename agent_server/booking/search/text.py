"""Text of specialists as search reads and shows it.

``normalize_skill`` and ``specialist_search_text`` are shared with every writer of
specialists (the dashboard's forms, the demo data), so that what is stored is what search
matches; ``fold``, ``clip`` and ``iso_utc`` shape text for the query and the answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime


def normalize_skill(text: str) -> str:
    """A skill as stored and searched: lower case, words joined by hyphens (``"Tax Law"`` ->
    ``"tax-law"``)."""
    words = re.split(r"[\s_]+", text.strip().lower())
    return "-".join(w for w in words if w)


def fold(text: str) -> str:
    """Lower case without accents: ``"São Paulo"`` -> ``"sao paulo"``."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def specialist_search_text(name: str, title: str, about: str, skills: Sequence[str]) -> str:
    """The ``search_text`` column of a specialist: what free-text search matches against."""
    skill_words = " ".join(s.replace("-", " ") for s in skills)
    return fold(" ".join((name, title, about, " ".join(skills), skill_words)))


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ""
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:") + "…"


def iso_utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
