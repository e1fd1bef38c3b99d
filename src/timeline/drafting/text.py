"""From an article's bytes to its sentences: decoding, HTML, language, sentence boundaries. Pure; linear time.

Decoding policy (the same for the command line and the API): UTF-8, with a byte-order mark dropped; bytes
that are not UTF-8 are read as Windows-1252 (what most mislabelled Western text is), its five undefined bytes
becoming U+FFFD; control characters other than tab and newline become spaces. A note says when the
fallback was used, and text that is mostly replacement or control characters is taken to be binary.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator


def wordset(words: str) -> frozenset[str]:
    """A set of words written as one space-separated string."""
    return frozenset(words.split())


# Words that make up a large share of any English text, and rarely of any other language's.
_ENGLISH = wordset(
    "the of and to in a is that for on was with as by at from it said says be has have are were an this "
    "not or but which their its they he she been had who will after more than over would"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TAGS = re.compile(r"<(p|article|html|body|div)\b", re.I)

# Abbreviations after which a full stop does not end a sentence (when the next word could go on it).
ABBREVIATIONS = wordset(
    "mr mrs ms dr prof gen lt col maj capt sgt cpl adm rep sen gov pres st jr sr co corp inc ltd no vs "
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n e.u a.m p.m i.e e.g etc approx est "
    "dept govt ft mt rev hon fig ave"
)
# A candidate boundary: terminal punctuation, closing quotes or brackets, then space (or end).
_BOUNDARY = re.compile(r"([.!?\u2026]+)([\"'\u201d\u2019)\]]*)(?=\s|$)")
_LAST_WORD = re.compile(r"([\w.]+)$")
# Abbreviations that can also end a sentence; one does when the next word is a usual sentence opener.
_TRAILING = frozenset({"u.s", "u.k", "u.n", "e.u", "etc", "a.m", "p.m", "inc", "co", "ltd", "corp"})
_STARTER = re.compile(
    r"(?:The|It|He|She|They|We|I|A|An|In|On|At|But|And|This|That|These|Those|There|Its|His|Her|Their|"
    r"After|Before|Meanwhile|However|Officials|Police)\b"
)


def decode(data: bytes | str) -> tuple[str, list[str]]:
    """Text from any bytes under the policy above, with notes on what was done to it."""
    notes: list[str] = []
    if isinstance(data, str):
        text = data
    else:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = data.decode("cp1252", errors="replace")
            notes.append(
                f"the article is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                "read as Windows-1252"
            )
    if text.startswith("\ufeff"):
        text = text[1:]
    odd = len(_CONTROL.findall(text)) + text.count("\ufffd")
    if text and odd > len(text) // 10:
        notes.append("the article looks like binary data, not text: nothing drafted")
        return "", notes
    return _CONTROL.sub(" ", text), notes


def article_text(raw: str) -> str:
    """Plain text from an article: for HTML, the <article> body (or the whole body) without tags."""
    if "<" not in raw or not _TAGS.search(raw):
        return raw
    article = re.search(r"<article\b[^>]*>(.*?)</article>", raw, re.I | re.S)
    body = article.group(1) if article else raw
    body = re.sub(r"<(script|style|nav|header|footer|aside)\b.*?</\1>", " ", body, flags=re.I | re.S)
    body = re.sub(r"</(p|h\d|li|div)>|<br\s*/?>", "\n", body, flags=re.I)
    return html.unescape(re.sub(r"<[^>]*>", " ", body))


def looks_english(text: str) -> bool:
    """Whether a text reads as English: enough of its words are English's commonest (a short text passes)."""
    words = re.findall(r"[^\W\d_]+", text[:20_000].lower())
    if len(words) < 12:
        return True
    return sum(word in _ENGLISH for word in words) / len(words) >= 0.12


def sentences(text: str) -> Iterator[tuple[int, int, str]]:
    """Sentences with their character spans: lines, cut at terminal punctuation that is not an abbreviation,
    an initial or a decimal point."""
    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        chunk = line.group(0)
        for mark in _BOUNDARY.finditer(chunk):
            end = line.start() + mark.end()
            if (
                mark.group(1) == "."
                and not mark.group(2)
                and not _ends_sentence(chunk, mark.start(), mark.end())
            ):
                continue
            yield from _span(text, start, end)
            start = end
        yield from _span(text, start, line.end())


def _ends_sentence(chunk: str, dot: int, after: int) -> bool:
    """Whether a full stop ends its sentence: not after an abbreviation or an initial that the next word
    continues (a lowercase word, a number, or a name after a title). Looks at a few characters only."""
    word = _LAST_WORD.search(chunk[max(0, dot - 24) : dot])
    token = word.group(1).lower() if word else ""
    rest = chunk[after : after + 40].lstrip()
    if not rest:
        return True
    if token in _TRAILING:
        # "U.S. officials said" goes on; "troops left the U.S. The army said" does not.
        return _STARTER.match(rest) is not None
    if token in ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
        return False  # a title or an initial: "Maj. Gen. Saeed Aleem", "John F. Kennedy"
    return not (rest[0].islower() or rest[0].isdigit())


def _span(text: str, start: int, end: int) -> Iterator[tuple[int, int, str]]:
    chunk = text[start:end]
    stripped = chunk.strip()
    if len(stripped) > 3:
        at = start + (len(chunk) - len(chunk.lstrip()))
        yield at, at + len(stripped), stripped
