"""Where a prompt mentions its subject, also when a translation inflects it.

A translated prompt often does not contain its subject as written: Russian declines it ("Прага" → "… побратимом
Праги?"), a French prompt lowercases a word ("Arrondissement" → "l'arrondissement"). Code that needs the subject's
position (an MPN subject gate reads its last token; neighbour questions put another subject in its place) finds it
with `find_subject`: exactly first, then ignoring case, then word by word with inflected endings.
"""

from __future__ import annotations

import re
import unicodedata

#: Letters an inflected ending may drop from a word (and net letters it may add): enough for the case endings of the
#: European languages ("Прага" → "Праги", "Гёрбер" → "Гёрбера"), too few to reach another word.
_DROPPED = 2
_ADDED = 3
#: Words shorter than this keep every letter (a shorter stem would match unrelated words); inside a subject of
#: several words they may still gain an ending ("Жан де Лафонтен" → "Жана де Лафонтена").
_MIN_STEMMED = 4
_SHORT_ADDED = 2

_WORD = re.compile(r"\w+")


def _spaceless(word: str) -> bool:
    """A word of a script written without spaces (CJK, kana, Thai...): its characters are not inflected endings."""
    return any(unicodedata.name(ch, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI")) for ch in word)


def _letters(most: int) -> str:
    """A regex for up to `most` word characters."""
    return rf"\w{{0,{most}}}"


def _word_pattern(word: str, several: bool) -> str:
    if not word.isalpha() or _spaceless(word):
        return re.escape(word)
    if len(word) < _MIN_STEMMED:
        return re.escape(word) + (_letters(_SHORT_ADDED) if several else "")
    stem = word[: max(_MIN_STEMMED - 1, len(word) - _DROPPED)]
    return re.escape(stem) + _letters(len(word) - len(stem) + _ADDED)


def _inflected_pattern(subject: str) -> re.Pattern[str] | None:
    words = list(_WORD.finditer(subject))
    if not words:
        return None
    several = len(words) > 1
    parts = [_word_pattern(words[0].group(), several)]
    for previous, word in zip(words, words[1:]):
        between = subject[previous.end() : word.start()]
        parts.append(r"\s+" if between.isspace() else r"\s*".join(re.escape(ch) for ch in between.split()))
        parts.append(_word_pattern(word.group(), several))
    edge_start = r"(?<!\w)" if subject[0].isalnum() else ""
    edge_end = r"(?!\w)" if subject[-1].isalnum() else ""
    return re.compile(edge_start + "".join(parts) + edge_end, re.IGNORECASE)


def find_subject(prompt: str, subject: str | None) -> tuple[int, int] | None:
    """The character span `(start, end)` of the last mention of `subject` in `prompt`, or None.

    Tried in order: the subject as written; ignoring case; each word with an inflected ending (a word of four or
    more letters may lose up to two final letters and gain up to three, words in between as written).

    Examples:
        >>> find_subject("Какой город является городом-побратимом Праги?", "Прага")
        (40, 45)
    """
    subject = (subject or "").strip()
    if not subject or not prompt:
        return None
    start = prompt.rfind(subject)
    if start >= 0:
        return start, start + len(subject)
    start = prompt.casefold().rfind(subject.casefold())
    if start >= 0 and len(prompt.casefold()) == len(prompt) and len(subject.casefold()) == len(subject):
        # (casefold kept every index where it was: no 'ß' → 'ss')
        return start, start + len(subject)
    pattern = _inflected_pattern(subject)
    matches = list(pattern.finditer(prompt)) if pattern is not None else []
    return (matches[-1].start(), matches[-1].end()) if matches else None


def subject_mention(prompt: str, subject: str | None) -> str | None:
    """The text of `subject`'s last mention in `prompt` as `find_subject` finds it ("Праги" for "Прага")."""
    span = find_subject(prompt, subject)
    return prompt[span[0] : span[1]] if span else None


__all__ = ["find_subject", "subject_mention"]
