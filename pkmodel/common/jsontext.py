"""JSON from users' files, with integers no float can hold read as floats.

Python reads a JSON integer of any length as an ``int``: one of 400 digits then breaks every
``math.isfinite`` and ``float()`` that checks it (OverflowError), and one of over 4,300 digits
breaks ``json.loads`` itself with a ValueError that is no ``JSONDecodeError``. Here an integer
longer than :data:`MAX_INT_DIGITS` digits is read as a :class:`LongInteger`, a float (``inf``
past float range) that the readers' finite-number checks refuse in their own sentence, quoting
the digits as written.
"""

from __future__ import annotations

import json
from typing import Any

# 10**300 still converts to a float; 10**309 does not.
MAX_INT_DIGITS = 300


class LongInteger(float):
    """An integer of a file too long for a float: its value is ``inf`` or ``-inf`` (or the
    nearest float), its repr the digits as written, for error sentences to quote."""

    text: str

    def __new__(cls, text: str) -> LongInteger:
        value = super().__new__(cls, text)
        value.text = text
        return value

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _int_or_float(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else LongInteger(text)


def parse_json(data: str | bytes, **kwargs: Any) -> Any:
    """``json.loads(data)`` with over-long integers as floats. Raises ValueError (a
    JSONDecodeError, or a UnicodeDecodeError for bytes that are no UTF-8/16/32) on bad input."""
    return json.loads(data, parse_int=_int_or_float, **kwargs)
