"""Parsing Prometheus range-query answers, matching limits to series, sizing the step."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fdguard.errors import UsageError
from fdguard.promsource import (
    MAX_POINTS,
    PromSeries,
    limit_query_for,
    load_range_json,
    match_limits,
    parse_range_result,
    step_for,
)


def _matrix(*series: tuple[dict[str, str], list[list[object]]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": m, "values": v} for m, v in series],
        },
    }


def test_an_api_answer_and_a_bare_result_give_the_same_series() -> None:
    doc = _matrix(
        ({"__name__": "process_open_fds", "pid": "7", "job": "api"},
         [[100, "10"], [160, "12"], [220.5, "13"]]),
    )
    [s] = parse_range_result(doc, "a.json")
    assert s.times == [100.0, 160.0, 220.5]
    assert s.values == [10.0, 12.0, 13.0]
    assert s.name == 'process_open_fds{job="api",pid="7"}'
    assert s.key == (("job", "api"), ("pid", "7"))
    bare = json.dumps(doc["data"]["result"])  # type: ignore[index]
    assert load_range_json(bare, "b.json") == [s]


def test_nan_and_stale_samples_are_left_out() -> None:
    doc = _matrix(({"pid": "1"}, [[1, "5"], [2, "NaN"], [3, "+Inf"], [4, "6"]]))
    [s] = parse_range_result(doc, "x")
    assert (s.times, s.values) == ([1.0, 4.0], [5.0, 6.0])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"},
         "x: Prometheus answered an error: parse error (bad_data)"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}},
         "x: the result is a vector, not a range of samples"),
        ({"status": "success"}, "x: not a Prometheus query_range response"),
        ([{"metric": {}, "value": [1, "2"]}], "x: series 0 has no 'values' (an instant sample"),
        ([{"metric": {"pid": "1"}, "values": [[1, "x"]]}],
         "x: {pid=\"1\"}: sample [1, 'x'] is not [timestamp, \"value\"]"),
        ([{"metric": {"pid": "1"}, "values": [[1, "-1"]]}], "x: {pid=\"1\"}: value -1 at 1"),
        ([{"metric": {}, "values": [[10**400, "1"]]}], "x: {}: sample [1000000000"),
        ([{"metric": {"pid": "1"}, "values": [[5, "1"], [4, "1"]]}],
         "x: {pid=\"1\"}: timestamp 4 goes back in time"),
        ("nope", "x: expected a list of series, got str"),
        ({"status": "error", "errorType": "x\ny", "error": "two\nlines"},
         "x: Prometheus answered an error: two lines (x\\ny)"),
        ([{"metric": {"a\nb": "c\"d"}, "values": [None]}], 'x: {a\\nb="c\\"d"}: sample None'),
    ],
)
def test_unusable_answers_are_named(doc: object, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_range_result(doc, "x")
    assert str(err.value).startswith(message)


def test_text_that_is_not_json_names_the_line() -> None:
    with pytest.raises(UsageError, match=r"^s.json:2: not JSON"):
        load_range_json('[\n{"metric": }]', "s.json")


def test_limit_query_follows_a_process_open_fds_selector_only() -> None:
    assert limit_query_for("process_open_fds") == "process_max_fds"
    assert limit_query_for(' process_open_fds{job="api"} ') == 'process_max_fds{job="api"}'
    assert limit_query_for("sum(process_open_fds)") is None
    assert limit_query_for("fdguard_open_fds_by_kind") is None


def _s(name: str, values: list[float], **labels: str) -> PromSeries:
    return PromSeries({"__name__": name, **labels}, list(range(len(values))), values)


def test_limits_are_matched_by_labels_not_by_order() -> None:
    counts = [_s("process_open_fds", [1], pid="1"), _s("process_open_fds", [1], pid="2"),
              _s("process_open_fds", [1], pid="3")]
    limits = [_s("process_max_fds", [1024, 4096], pid="2"),
              _s("process_max_fds", [512], pid="1")]
    assert match_limits(counts, limits) == [512, 4096, None]
    # One count and one limit belong together whatever their labels.
    assert match_limits(counts[:1], limits[:1]) == [4096]
    assert match_limits(counts[:2], limits[:1]) == [None, 4096]


def test_the_step_grows_to_stay_under_prometheus_point_limit() -> None:
    assert step_for(7 * 86400, 60) == 60
    week4 = 28 * 86400
    step = step_for(week4, 60)
    assert step > 60
    assert week4 / step + 1 <= MAX_POINTS
    assert step_for(16.0, 0.05) == 0.05  # sub-second steps stay (a scaled-down test)


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=20,
)
_SERIES = st.fixed_dictionaries({
    "metric": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3) | _JSON,
    "values": st.lists(st.lists(_JSON | st.text(max_size=6), max_size=3), max_size=6) | _JSON,
})


@settings(max_examples=200, deadline=None, database=None)
@given(doc=_JSON | st.lists(_SERIES, max_size=3) | st.fixed_dictionaries({
    "status": st.sampled_from(["success", "error"]) | _JSON,
    "data": st.fixed_dictionaries({"resultType": st.sampled_from(["matrix", "vector"]),
                                   "result": st.lists(_SERIES, max_size=3) | _JSON}) | _JSON,
}))
def test_any_json_is_series_or_a_usage_error(doc: object) -> None:
    try:
        series = parse_range_result(doc, "fuzz")
    except UsageError as err:
        message = str(err)
        series = []
        assert message.startswith("fuzz")  # names its source, and is one line
        assert "\n" not in message
    for s in series:
        assert len(s.times) == len(s.values)
        assert s.times == sorted(s.times)
        assert all(v >= 0 and math.isfinite(v) for v in s.values)
