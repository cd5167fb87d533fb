"""Free text that survives de-identification: an MR-vocabulary allow-list, not a deny-list.

Series, protocol and study descriptions are needed after de-identification (scanner series
are mapped to study arms by them), but a deny-list ("remove the names found elsewhere in
the header") passes every name it was not told about. :class:`FreeTextCleaner` keeps a
token only when it is made of known MR terms and numbers, so a name it has never seen is
dropped by construction:

* Text is split into tokens at separators (whitespace and ``_ - / + ( ) [ ] { } , ; : =
  ^ | & ' " \\ #``); the separators between kept tokens are kept, so ``pd_tse_fs_sag``,
  ``CS-AI`` and ``R=4`` come out as they went in.
* A token is kept when, case-insensitively, it is a vocabulary term, or it splits into
  letter runs that are each a vocabulary term, numbers, and the characters ``% * °``
  (``T2``, ``b800``, ``2.5mm``, ``0.4x0.4``, ``320x256``, ``grappa2``, ``1.5T``). Every
  other character (``.`` outside a number, ``@``, ``^`` inside a token, non-ASCII digits)
  refuses the token. The vocabulary is ``data/mr_vocabulary.txt`` (sources listed there)
  plus the site's extra terms (setting ``DEID_EXTRA_VOCABULARY``).
* Numbers: a digit run of 5 or more is refused (record numbers, dates written without
  separators) unless a unit follows it; a 4-digit number from 1900 to 2099 is refused as
  a possible year unless it is a b-value (``b2000``) or has a unit; bare numbers in a row
  are refused when there are three or more (a date written with spaces) or they hold 5 or
  more digits together (``445 2781``); dates (``2024-03-01``, ``01.03.2024``,
  ``15 MAR 65``, ``March 15, 1965``), times (``10:15``) and numbers joined by ``-`` or
  ``/`` with 5 or more digits in all (``445-2781``) are removed before tokens are looked
  at.
* Tokens equal to one of the caller's ``identifiers`` (strings found in the identifying
  attributes of the same header) are removed even when the vocabulary allows them.

Nothing here imports Django: the site's extra vocabulary is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

VOCABULARY_FILE = Path(__file__).resolve().parent / "data" / "mr_vocabulary.txt"

_SEPARATOR_CHARS = r"\s_\-/+()\[\]{},;:=^|&'\"\\#"
_SEPARATORS = re.compile(f"([{_SEPARATOR_CHARS}]+)")
_PARTS = re.compile(r"[0-9]+(?:\.[0-9]+)?|[^\W\d_]+|.", re.DOTALL)
_BARE_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Removed before tokenising: they would otherwise split into short, harmless-looking numbers.
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_OR_TIME = re.compile(
    r"(?<![0-9])(?:[0-9]{1,4}[-./][0-9]{1,2}[-./][0-9]{1,4}|[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?)"
    r"(?![0-9])"
    # "15 MAR 1965", "15-Mar-65", "March 15, 1965"
    rf"|(?<![0-9a-z])(?:[0-9]{{1,2}}[\s\-./]*{_MONTH}[\s\-./,]*[0-9]{{2,4}}"
    rf"|{_MONTH}[\s\-./]*[0-9]{{1,2}}(?:st|nd|rd|th)?[\s\-./,]*[0-9]{{2,4}})(?![0-9a-z])",
    re.IGNORECASE,
)
_JOINED_DIGITS = re.compile(r"(?<![0-9.])[0-9]+(?:[-/][0-9]+)+(?![0-9])")
_UNITS = frozenset("mm cm m ms msec s sec min t mt hz khz mhz % ° deg ml kg px".split())
_SYMBOLS = frozenset("%*°")
_REFUSED = "\x00"  # never allowed in a token
_OPENING, _CLOSING = "([{", ")]}"


def vocabulary_terms(entries: Iterable[str]) -> frozenset[str]:
    """Lower-case tokens of vocabulary entries ("AIR Recon DL" gives air, recon, dl)."""
    terms: set[str] = set()
    for entry in entries:
        entry = entry.split("#", 1)[0]
        terms.update(t.lower() for t in _SEPARATORS.split(entry)[::2] if t)
    return frozenset(terms)


@lru_cache(maxsize=4)
def load_vocabulary(path: Path = VOCABULARY_FILE) -> frozenset[str]:
    """The terms of a vocabulary file (one or more terms a line, ``#`` comments)."""
    return vocabulary_terms(path.read_text(encoding="utf-8").splitlines())


class FreeTextCleaner:
    """Keeps only the MR-vocabulary tokens of free text (see the module docstring).

    extra_vocabulary: the site's additional terms, e.g. ``["AIR Recon DL", "MyKneeFast"]``.
    """

    def __init__(self, extra_vocabulary: Iterable[str] = ()) -> None:
        self.vocabulary = load_vocabulary() | vocabulary_terms(extra_vocabulary)

    def allows(self, token: str) -> bool:
        """Whether one token (no separators in it) may stay."""
        token = token.lower()
        if token in self.vocabulary:
            return True
        parts = _PARTS.findall(token)
        for index, part in enumerate(parts):
            if "0" <= part[0] <= "9":
                before = parts[index - 1] if index else ""
                after = parts[index + 1] if index + 1 < len(parts) else ""
                digits, _, fraction = part.partition(".")
                exempt = after in _UNITS or before == "b"
                if len(digits) > (5 if exempt else 4):
                    return False
                # Decimals in protocol text are short (0.4, 2.5, 1.5 T); a long fraction
                # is a number in disguise (an MRN, a phone number, 20.240301).
                if len(fraction) > 2 or len(digits) + len(fraction) > 5:
                    return False
                if len(digits) == 4 and 1900 <= int(digits) <= 2099 and not exempt:
                    return False
            elif part.isalpha():
                if part not in self.vocabulary:
                    return False
            elif part not in _SYMBOLS:
                return False
        return True

    def clean(self, text: str, identifiers: Iterable[str] = ()) -> str:
        """``text`` with every token that is not allowed (or is an identifier) removed.

        Whitespace is collapsed; separators left without a token on one side are dropped,
        as are brackets left empty or unbalanced. Returns "" when nothing is left.
        """
        denied = {str(i).lower() for i in identifiers if i}
        # A removed date becomes a token that is always refused, so that its separators
        # merge like those of any dropped token.
        text = _DATE_OR_TIME.sub(_REFUSED, str(text))
        text = _JOINED_DIGITS.sub(
            lambda m: _REFUSED if sum(c.isdigit() for c in m[0]) >= 5 else m[0], text
        )
        pieces = _SEPARATORS.split(text)
        tokens, separators = pieces[::2], pieces[1::2]
        keep = [
            bool(token)
            and token.lower() not in denied
            and (
                self.allows(token)
                # "b=2000", "b 2000": the number is a b-value, as in "b2000"
                or (index > 0 and tokens[index - 1].lower() == "b" and self.allows("b" + token))
            )
            for index, token in enumerate(tokens)
        ]
        _drop_number_runs(tokens, keep)

        out: list[str] = []
        pending: list[str] = []  # separator runs since the last kept token
        for index, token in enumerate(tokens):
            if keep[index]:
                if out:
                    out.append(_join_separators(pending))
                else:
                    out.append("".join(c for c in "".join(pending) if c in _OPENING))
                out.append(token)
                pending = []
            if index < len(separators):
                pending.append(separators[index])
        if out:
            out.append("".join(c for c in "".join(pending) if c in _CLOSING))
        return _balance_brackets("".join(out)).strip()


def _drop_number_runs(tokens: list[str], keep: list[bool]) -> None:
    """Refuse kept bare numbers in a row when there are three or more (``15 03 65``) or
    they hold five or more digits together (``445 2781``)."""
    run: list[int] = []
    for index, token in enumerate([*tokens, ""]):
        if index < len(tokens) and not keep[index]:
            continue
        if index < len(tokens) and _BARE_NUMBER.fullmatch(token):
            run.append(index)
            continue
        digits = sum(c.isdigit() for number in run for c in tokens[number])
        if len(run) >= 3 or (len(run) == 2 and digits >= 5):
            for number in run:
                keep[number] = False
        run = []


def _join_separators(runs: list[str]) -> str:
    """The separator between two kept tokens, from the runs between them in the original."""
    if len(runs) == 1:
        return re.sub(r"\s+", " ", runs[0])
    merged = "".join(runs)
    plain = [c for c in merged if c not in _OPENING + _CLOSING]
    core = " " if any(c.isspace() for c in plain) else (plain[0] if plain else " ")
    closing = "".join(c for c in merged if c in _CLOSING)
    opening = "".join(c for c in merged if c in _OPENING)
    return closing + core + opening


def _balance_brackets(text: str) -> str:
    """Remove brackets without a partner and pairs with nothing but spaces inside (one
    pass, so nested input costs linear time)."""
    out = list(text)
    stack: list[list] = []  # [index of the opening bracket, whether it holds anything]
    for index, char in enumerate(text):
        if char in _OPENING:
            stack.append([index, False])
        elif char in _CLOSING:
            if stack and _OPENING.index(text[stack[-1][0]]) == _CLOSING.index(char):
                opening, filled = stack.pop()
                if filled:
                    if stack:
                        stack[-1][1] = True
                else:
                    out[opening], out[index] = "", " "
            else:
                out[index] = ""
        elif not char.isspace() and stack:
            stack[-1][1] = True
    for opening, _filled in stack:
        out[opening] = ""
    return re.sub(r"\s+", " ", "".join(out))
