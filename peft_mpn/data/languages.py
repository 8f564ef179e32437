"""What the library knows about languages by their ISO 639-1 codes: English names and the script each is written in.

Used to word prompts that name a language (`model_paraphraser`, `model_translator`) and to catch a translation
written in the wrong language (`script_share`).
"""

from __future__ import annotations

import unicodedata

#: English names of language codes, for the `{language}` slot of a paraphrase or translation prompt.
LANGUAGE_NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "fa": "Persian", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch",
    "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip

#: The Unicode script(s) a language's letters are written in (the first word of their Unicode character names).
SCRIPTS = {
    **dict.fromkeys(
        ["ca", "cs", "da", "de", "en", "es", "fr", "id", "it", "nl", "pl", "pt", "sv", "tr", "vi"], ("LATIN",)
    ),
    **dict.fromkeys(["bg", "ru", "uk"], ("CYRILLIC",)),
    **dict.fromkeys(["ar", "fa"], ("ARABIC",)),
    "el": ("GREEK",),
    "he": ("HEBREW",),
    "hi": ("DEVANAGARI",),
    "ja": ("HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "CJK"),
    "ko": ("HANGUL",),
    "th": ("THAI",),
    "zh": ("CJK",),
}


def language_name(language: str) -> str:
    """The English name of `language` (the code itself where unknown)."""
    return LANGUAGE_NAMES.get(language, language)


def script_share(text: str, language: str) -> float | None:
    """The share of `text`'s letters written in `language`'s script (None: no letters, or a language whose script
    is not in `SCRIPTS`). A question in Chinese about "Airbus" still has most of its letters in Han characters."""
    scripts = SCRIPTS.get(language)
    letters = [unicodedata.name(c, "") for c in text if c.isalpha()]
    if scripts is None or not letters:
        return None
    return sum(name.split(" ", 1)[0] in scripts for name in letters) / len(letters)


__all__ = ["LANGUAGE_NAMES", "SCRIPTS", "language_name", "script_share"]
