"""How the word n-gram features split a text into tokens, in any script.

scikit-learn's default word pattern, ``\\b\\w\\w+\\b``, takes a run of two or more letters as a word. Chinese,
Japanese and Thai are written without spaces between words, so under it a whole clause is one "word" that no other
prompt shares, and those prompts get no word features at all. :data:`TOKEN_PATTERN` makes each character of these
scripts a token of its own (the word bigrams are then character bigrams, which carry most of the meaning in them)
and keeps the default's words elsewhere. Korean is written with spaces, and its words stay whole: splitting Hangul
into syllables scored lower on real Korean prompts.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TOKEN_PATTERN", "TOKEN_PATTERN", "TOKEN_PATTERNS", "UNSPACED_SCRIPTS"]

DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
"""scikit-learn's word pattern, which heads trained before :data:`TOKEN_PATTERN` use."""
UNSPACED_SCRIPTS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f"
"""Character ranges of scripts written without spaces between words: Hiragana and Katakana, CJK ideographs
(extension A, unified, compatibility) and Thai."""
TOKEN_PATTERN = rf"(?u)[{UNSPACED_SCRIPTS}]|[^\W{UNSPACED_SCRIPTS}]{{2,}}"
"""One token per character of :data:`UNSPACED_SCRIPTS`, else runs of two or more other word characters.

Example:
    >>> import re
    >>> re.findall(TOKEN_PATTERN, "帮我 debug 一下这个 API")
    ['帮', '我', 'debug', '一', '下', '这', '个', 'API']
"""
TOKEN_PATTERNS = (TOKEN_PATTERN, DEFAULT_TOKEN_PATTERN)
"""The word patterns an artifact may name (its tokens never hold whitespace, which the fast head relies on)."""
