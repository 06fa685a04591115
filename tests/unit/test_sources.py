"""Compiled source decoders (aiaas.sources) on JSON and CSV records: nested paths, arrays, defaults,
vocabularies, labels, passthrough and keys; every bad record a Rejection naming the field, the rest
of the batch decoded."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from aiaas.schemas.errors import AiaasError
from aiaas.schemas.sources import Source
from aiaas.sources import Decoded, Rejection, compile_source

EVENT = {
    "topic": "events",
    "features": [
        "user.age",
        {"path": "user.score", "default": 0.5},
        {"path": "pixels[]", "width": 3},
        {"path": "color", "vocabulary": ["red", "green", "blue"]},
        {"path": "size", "vocabulary": ["s", "m", "l"], "encoding": "index", "default": "m"},
    ],
    "label": "outcome",
    "label_vocabulary": ["no", "yes"],
    "passthrough": ["id", "user.name"],
    "key": "id",
}


def event(**over: Any) -> dict[str, Any]:
    rec = {"id": "e1", "user": {"age": 31, "score": 0.25, "name": "ann"}, "pixels": [1, 2, 3],
           "color": "green", "size": "l", "outcome": "yes"}
    rec.update(over)
    return rec


def decode(spec: dict[str, Any], records: list[Any], **kw: Any) -> Decoded:
    values = [r if isinstance(r, bytes) or r is None else json.dumps(r).encode() for r in records]
    return compile_source(Source.model_validate(spec), **kw).decode(values)  # type: ignore[arg-type]


def reasons(d: Decoded) -> dict[int, tuple[str, str]]:
    return {r.index: (r.field, r.reason) for r in d.rejected}


def test_json_nested_arrays_vocabulary_label_passthrough_key() -> None:
    d = decode(EVENT, [event(), event(id="e2", user={"age": 40}, color="red", size="xl", outcome=0)])
    assert d.x.dtype == np.float32 and d.x.shape == (2, Source.model_validate(EVENT).width()) == (2, 9)
    np.testing.assert_array_equal(d.x[0], [31, 0.25, 1, 2, 3, 0, 1, 0, 2])
    # missing score -> its default; size outside the vocabulary -> the default entry "m" (index 1)
    np.testing.assert_array_equal(d.x[1], [40, 0.5, 1, 2, 3, 1, 0, 0, 1])
    assert d.ok.tolist() == [0, 1] and d.y is not None and d.y.dtype == np.int64
    assert d.y.tolist() == [1, 0]  # "yes" by name, 0 as a class index
    assert d.passthrough == [{"id": "e1", "user.name": "ann"}, {"id": "e2", "user.name": None}]
    assert d.keys == ["e1", "e2"] and not d.rejected


def test_json_bad_records_are_rejections_naming_the_field() -> None:
    records = [
        event(),
        event(user={"score": 1}),  # 1: user.age missing
        event(user={"age": "old"}),  # 2: wrong type
        event(pixels=[1, 2]),  # 3: array too short
        event(color="pink"),  # 4: not in the vocabulary (no default)
        event(outcome="maybe"),  # 5: label outside label_vocabulary
        b'{"id": "e6", "user": ',  # 6: not JSON
        None,  # 7: tombstone
        b"[1, 2]",  # 8: not an object
        event(user={"age": None}),  # 9: null without a default
        {k: v for k, v in event().items() if k != "user"},  # 10: the whole object missing
        event(user={"age": 1e300}),  # 11: overflows float32
        event(id="last"),
    ]
    d = decode(EVENT, records)
    assert d.ok.tolist() == [0, 12] and d.keys == ["e1", "last"] and len(d.x) == 2
    why = reasons(d)
    assert why[1] == ("user.age", "missing")
    assert why[2][0] == "user.age" and why[2][1].startswith("not a number")
    assert why[3][0] == "pixels[]" and "length" in why[3][1]
    assert why[4] == ("color", "not in vocabulary")
    assert why[5] == ("outcome", "not in label_vocabulary")
    assert why[6][0] == "" and why[6][1].startswith("not JSON")
    assert why[7] == ("", "no value (tombstone)")
    assert why[8][0] == "" and why[8][1].startswith("not an object")
    assert why[9] == ("user.age", "missing")
    assert why[10] == ("user.age", "missing")  # the first required field under the missing object
    assert why[11] == ("user.age", "not a finite number")
    assert [r.index for r in d.rejected] == sorted(why)


def test_json_numbers_as_strings_and_booleans_are_read() -> None:
    spec = {"topic": "t", "features": ["a", "b"], "label": "y"}
    d = decode(spec, [{"a": "2.5", "b": True, "y": 3}])
    np.testing.assert_array_equal(d.x, [[2.5, 1.0]])
    assert d.y is not None and d.y.dtype == np.float32 and d.y.tolist() == [3.0]


def test_labels_false_ignores_a_missing_label() -> None:
    spec = {"topic": "t", "features": ["a"], "label": "y"}
    assert reasons(decode(spec, [{"a": 1}])) == {0: ("y", "missing")}
    d = decode(spec, [{"a": 1}], labels=False)
    assert d.y is None and d.ok.tolist() == [0] and d.x.tolist() == [[1.0]]


def test_array_default_fills_every_column_and_empty_batch() -> None:
    spec = {"topic": "t", "features": [{"path": "v[]", "width": 2, "default": -1}, "w"]}
    d = decode(spec, [{"w": 3}, {"v": [5, 6], "w": 4}])
    np.testing.assert_array_equal(d.x, [[-1, -1, 3], [5, 6, 4]])
    empty = decode(spec, [])
    assert empty.x.shape == (0, 3) and empty.ok.dtype == np.int64 and not empty.rejected


def test_passthrough_of_an_object_holding_features() -> None:
    spec = {"topic": "t", "features": ["user.age"], "passthrough": ["user", "tags"]}
    d = decode(spec, [{"user": {"age": 3, "extra": "x"}, "tags": ["a", {"b": 1}]}])
    assert d.passthrough == [{"user": {"age": 3.0}, "tags": ["a", {"b": 1}]}]


def test_a_path_both_a_value_and_an_object_is_refused_at_compile_time() -> None:
    with pytest.raises(AiaasError) as info:
        compile_source(Source.model_validate({"topic": "t", "features": ["a", "a.b"]}))
    assert info.value.code.value == "bad_request"


CSV = {
    "topic": "t", "format": "csv",
    "csv": {"columns": ["id", "a", "b", "p0", "p1", "color", "label"]},
    "features": ["a", {"path": "b", "default": 7}, {"path": "p0[]", "width": 2},
                 {"path": "color", "vocabulary": ["red", "green"]}],
    "label": "label", "label_vocabulary": ["no", "yes"], "passthrough": ["id"], "key": "id",
}


def test_csv_lines_with_bad_cells() -> None:
    lines = [b"1,2.5,3,4,5,red,yes\n", b"2,1,,4,5,green,0", b"3,x,1,4,5,red,no", b"4,,1,4,5,red,no",
             b"5,1,1,4,5,blue,no", b"6,1,1,4", b'7,"1,5",1,4,5,red,yes', b"8,1,1,4,5,red,maybe", None,
             b"10,1e400,1,1,1,red,no", b'11,"2",1,4,5,red,yes']
    d = decode(CSV, lines)
    assert d.ok.tolist() == [0, 1, 10]
    np.testing.assert_array_equal(d.x, [[2.5, 3, 4, 5, 1, 0], [1, 7, 4, 5, 0, 1], [2, 1, 4, 5, 1, 0]])
    assert d.y is not None and d.y.tolist() == [1, 0, 1]
    assert d.passthrough == [{"id": "1"}, {"id": "2"}, {"id": "11"}] and d.keys == ["1", "2", "11"]
    assert reasons(d) == {
        2: ("a", "not a number"), 3: ("a", "missing"), 4: ("color", "not in vocabulary"),
        5: ("", "expected 7 columns, got 4"), 6: ("a", "not a number"),  # "1,5" quoted: one cell
        7: ("label", "not in label_vocabulary"), 8: ("", "no value (tombstone)"),
        9: ("a", "not a finite number"),
    }


def test_csv_numbers_fast_path_matches_the_cell_path() -> None:
    spec = {"topic": "t", "format": "csv", "csv": {"columns": ["a", "b", "c"], "delimiter": ";"},
            "features": ["c", "a"], "label": "b"}
    rows = np.random.default_rng(3).normal(size=(50, 3)).round(5)
    lines = [";".join(map(str, r)).encode() for r in rows.tolist()]
    fast = decode(spec, lines)
    slow = decode(spec, [*lines, b"1;2"])  # one short line: the whole batch takes the cell path
    np.testing.assert_allclose(fast.x, rows[:, [2, 0]].astype(np.float32))
    np.testing.assert_array_equal(fast.x, slow.x)
    assert fast.y is not None and np.allclose(fast.y, rows[:, 1])
    assert slow.rejected == [Rejection(50, "", "expected 3 columns, got 2")]


def test_csv_unknown_column_is_refused_at_compile_time() -> None:
    spec = {"topic": "t", "format": "csv", "csv": {"columns": ["a"]}, "features": ["a", "zz"]}
    with pytest.raises(AiaasError, match="zz"):
        compile_source(Source.model_validate(spec))
