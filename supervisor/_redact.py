"""Redaction: known secrets in every escaped form, and secret-shaped values, become `***`.

A declared secret is replaced in each form a log can show it in: raw, inside a Python literal
with either quote (`repr` of SGLang's `server_args`), JSON, `shlex.quote`d argv, URL-encoded. The
generic patterns mask `api_key=...`, a dict's `'api_key': '...'` (escaped quotes inside the value
included; an unterminated value is masked to the end of its line), `--api-key WORD` (a shell word,
quotes and all), `Authorization: Bearer ...` and Hugging Face tokens.

Everything is prefiltered: each pattern and each secret is a `Needle` whose rarest characters are
looked for first (`in` on one character is a `memchr`), so a flood of log lines that cannot hold
a secret costs a few `memchr` per 256 KiB and no regex.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from collections.abc import Iterable

__all__ = ["REDACTED", "Needle", "Redactor", "escaped_forms"]

REDACTED = "***"
_CUT_WINDOW = 4096  # a piece is never cut within this many characters after an api_key-like word

# Characters by how often they appear in logs, most common first; any other is rarer still.
_BY_FREQUENCY = " etaoinsrlcdhupm0123456789.,:-/[]()gfbwykv_=TSAPICDERMNOLx'\"#qjzBFGHUWKVYXJQZ"
_RANK = {c: i for i, c in enumerate(_BY_FREQUENCY)}


class Needle:
    """A literal, looked for cheaply: its rarest characters one by one (`memchr`), then itself.

    A 256 KiB block of decode lines has no `_`, `=`, `z` or `y`, so almost every question about a
    secret-shaped word is answered by one `memchr` that finds nothing.
    """

    __slots__ = ("gates", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        rarest = sorted(set(text), key=lambda c: -_RANK.get(c, len(_RANK)))
        self.gates = tuple(rarest[:4])

    def found(self, hay: str) -> bool:
        for c in self.gates:
            if c not in hay:
                return False
        return self.text in hay


# A quoted value, either quote, backslash escapes inside; unterminated, it runs to the end of the
# line (masking too much is safe). An unquoted value runs to a space or a delimiter; a shell
# word joins quoted and bare parts (`'a'"'"'b'`) and stops at a list's `,` or `]`.
_QUOTED = r"""(?P<q>['"])(?P<v>(?:\\.|(?!(?P=q))[^\\\n])*)(?P<e>(?P=q)?)"""
_BARE = r"""(?P<u>(?!None\b)[^\s'",;)}\]]+)"""
_SHELL_WORD = r"""(?P<w>(?!-)(?:'[^'\n]*'?|"(?:\\.|[^"\\\n])*"?|\\.|[^\s'"\\,\])])+)"""

# Secrets that SGLang and friends print without being asked: the server_args line carries the
# api_key in clear text (as `api_key='...'` or a dict's `'api_key': '...'`), an argv may carry
# `--api-key`, a header a bearer token. Each pattern comes with literal words, one of which must
# be present: a cheap test that skips the regex on nearly every block.
_GENERIC: list[tuple[tuple[Needle, ...], re.Pattern[str]]] = [
    (
        (Needle("api_key"), Needle("API_KEY")),
        re.compile(rf"""(?P<p>api_key['"]?\s*[:=]\s*)(?:{_QUOTED}|{_BARE})""", re.I),
    ),
    (
        (Needle("-api-key"),),
        re.compile(rf"""(?P<p>--(?:admin-)?api-key(?:=|\s+|['"]\s*,\s*))(?:{_SHELL_WORD})"""),
    ),
    (
        (Needle("uthorization"), Needle("UTHORIZATION")),
        re.compile(r"""(?P<p>authorization['"]?\s*[:=]?\s*['"]?bearer\s+)(?P<u>[^\s'"]+)""", re.I),
    ),
    (
        (Needle("TOKEN="),),
        re.compile(r"""(?P<p>\b(?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN)=)(?P<u>\S+)"""),
    ),
    ((Needle("hf_"),), re.compile(r"""(?P<p>)\b(?P<u>hf_[A-Za-z0-9]{16,})""")),
]
# Lower-case words after which a piece is not cut (their value may follow within the window).
_CUT_WORDS = ("api_key", "api-key", "authorization", "token=", "hf_")


def _mask(m: re.Match[str]) -> str:
    q = m.group("q") if "q" in m.re.groupindex else None
    if q:
        return f"{m.group('p')}{q}{REDACTED}{m.group('e')}"
    return f"{m.group('p')}{REDACTED}"


def _py_literal(secret: str, quote: str) -> str:
    """The inside of a Python string literal of `secret` written with `quote`."""
    out = []
    for ch in secret:
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        else:
            out.append(repr(ch)[1:-1])  # \n, \x00, \u2028 as repr writes them
    return "".join(out)


def escaped_forms(secret: str) -> set[str]:
    """Every way a log line can spell `secret`: raw, Python, JSON, shell and URL escaped."""
    forms = {
        secret,
        repr(secret)[1:-1],
        _py_literal(secret, "'"),
        _py_literal(secret, '"'),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        shlex.quote(secret),
        urllib.parse.quote(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    return {f for f in forms if f}


class Redactor:
    """Replace known secrets, in every escaped form, and secret-shaped values by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {f for s in secrets if s for f in escaped_forms(s)}
        self._needles = [Needle(f) for f in sorted(forms, key=len, reverse=True)]
        #: How many trailing characters a cut must keep: the start of a secret not yet complete.
        self.overlap = max((len(f) for f in forms), default=1) - 1

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle.found(text):
                text = text.replace(needle.text, REDACTED)
        for needles, pattern in _GENERIC:
            if any(n.found(text) for n in needles):
                text = pattern.sub(_mask, text)
        return text

    def cut_point(self, text: str) -> int:
        """Where to cut already-redacted `text` so that no secret can straddle the cut.

        Keeps the last `overlap` characters (a declared secret whose end has not arrived: at most
        half of `text`) and, from the first api_key-like word of the 4 KiB before them, all the
        rest (a value that may go on), unless that word starts `text`.
        """
        end = max(len(text) - self.overlap, len(text) // 2, 1)
        start = max(0, end - _CUT_WINDOW)
        window = text[start:end].lower()
        hits = [i for i in (window.find(w) for w in _CUT_WORDS) if i >= 0]
        if hits and start + min(hits) > 0:
            return start + min(hits)
        return end
