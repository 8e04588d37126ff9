"""JSON from users' files: integers no float can hold are read as floats, not as ints that
break every finite-number check after them."""

from __future__ import annotations

import json
import math

import pytest

from pkmodel.common.jsontext import MAX_INT_DIGITS, LongInteger, parse_json


def test_over_long_integers_are_floats_and_short_ones_stay_ints():
    doc = parse_json('{"a": 1' + "0" * 400 + ', "b": -1' + "0" * 5000 + ', "c": 12}')
    assert doc["a"] == math.inf and doc["b"] == -math.inf  # 5000 digits: json.loads raises
    assert isinstance(doc["a"], LongInteger) and repr(doc["b"]) == "-1" + "0" * 5000
    assert not math.isfinite(doc["a"]) and type(doc["a"]) not in (int, float)
    assert doc["c"] == 12 and type(doc["c"]) is int
    edge = parse_json("[" + "9" * MAX_INT_DIGITS + ", " + "9" * (MAX_INT_DIGITS + 1) + "]")
    assert type(edge[0]) is int and math.isfinite(edge[0])
    assert isinstance(edge[1], LongInteger) and float(edge[1]) == pytest.approx(1e301)
    with pytest.raises(ValueError, match="Exceeds the limit"):
        json.loads("1" + "0" * 5000)  # what the readers met before


@pytest.mark.parametrize("data", [b"{", b"\xff\xfe\xff", "[1, 2,]"])
def test_bad_json_raises_value_error(data):
    with pytest.raises(ValueError):
        parse_json(data)
