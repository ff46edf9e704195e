"""Language-aware tokenization for lexical baselines.

* Text is NFKC-normalised and case-folded; punctuation, symbols, separators and control characters split tokens
  (combining marks stay inside words, which matters for Thai and Devanagari).
* Runs of scripts written without spaces (Han, Kana, Hangul syllables, Thai, Lao, Khmer, Myanmar) become
  overlapping character bigrams (a one-character run stays a unigram), whatever the language: the usual
  dictionary-free choice (as in Lucene's CJK analyzer). Digits and Latin inside such text stay whole words.
* Other words are stemmed when the language has a Snowball stemmer (PyStemmer), else kept as they are.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache, lru_cache

import Stemmer

SNOWBALL = {
    "ar": "arabic",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "hi": "hindi",
    "id": "indonesian",
    "ru": "russian",
    "tr": "turkish",
}
_NO_SPACE = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_SEGMENTS = re.compile(f"([{_NO_SPACE}]+)")


@lru_cache(maxsize=1)
def _separator_table() -> dict[int, str]:
    """Every code point that is punctuation, symbol, separator or control maps to a space."""
    return {
        cp: " "
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp))[0] in "PSZC" and not chr(cp).isspace()
    }


@cache
def _stemmer(language: str):
    name = SNOWBALL.get(language)
    return Stemmer.Stemmer(name) if name else None


def words(text: str) -> list[str]:
    return unicodedata.normalize("NFKC", text).casefold().translate(_separator_table()).split()


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]


def tokenize(text: str, language: str) -> list[str]:
    """Tokens of ``text`` for a lexical index of ``language`` (ISO 639-1)."""
    stemmer = _stemmer(language)
    tokens: list[str] = []
    for word in words(text):
        for i, part in enumerate(_SEGMENTS.split(word)):
            if not part:
                continue
            if i % 2:  # a no-space-script run (re.split puts captured groups at odd positions)
                tokens.extend(_bigrams(part))
            else:
                tokens.append(stemmer.stemWord(part) if stemmer is not None else part)
    return [t for t in tokens if t]  # a stemmer can reduce a word to nothing (seen with Arabic)
