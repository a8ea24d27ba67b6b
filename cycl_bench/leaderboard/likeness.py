"""Text and links as a reader sees them, so that a copy written with look-alike letters, another
case or a decorated URL compares equal to the entry it copies.

Text: Unicode NFKC (full-width and compatibility forms), Cyrillic and Greek letters that look
like Latin ones mapped to those, case folded, accents dropped. Links: scheme, `www.`, default
ports, trailing slashes, empty or reordered query parts and the fragment do not count.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

# Cyrillic and Greek letters drawn like a Latin letter (Unicode's confusables, the common ones)
LOOK_ALIKES = str.maketrans(
    {
        # Cyrillic capitals
        "А": "A", "В": "B", "Е": "E", "Ё": "E", "З": "3", "І": "I", "Ї": "I", "Ј": "J",
        "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Ѕ": "S", "Т": "T",
        "У": "Y", "Х": "X", "Ү": "Y", "Һ": "H", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
        # Cyrillic small letters
        "а": "a", "в": "b", "е": "e", "ё": "e", "і": "i", "ї": "i", "ј": "j", "к": "k",
        "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "ѕ": "s", "т": "t", "у": "y",
        "х": "x", "ү": "y", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ь": "b",
        # Greek capitals
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
        # Greek small letters
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    }
)  # fmt: skip


def latin_lookalike(text: str) -> str:
    """NFKC, then look-alike letters replaced by the Latin ones they imitate."""
    return unicodedata.normalize("NFKC", text).translate(LOOK_ALIKES)


def comparable_text(text: str) -> str:
    """Letters and digits only, case folded, accents dropped: 'Nаïve ' and 'NAIVE' are equal."""
    folded = unicodedata.normalize("NFKD", latin_lookalike(text).casefold())
    return "".join(ch for ch in folded if ch.isalnum())


def comparable_url(url: str) -> str:
    """The page a link leads to: `https://www.X.org/a/?` and `http://x.org/a` are equal."""
    parts = urlsplit(latin_lookalike(url.strip()).casefold())
    host = (parts.hostname or "").removeprefix("www.")
    path = unquote(parts.path).rstrip("/")
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query)
        if value and not key.startswith("utm_")
    )
    return host + path + ("?" + urlencode(query) if query else "")
