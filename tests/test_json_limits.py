"""The JSON decoder of the core: json.loads's answer, faster, and the limits it states.

orjson decodes the usual document; whatever it refuses goes the standard library's way, so the
value (or the 400) is always what json.loads gives: checked here on the documents where the two
libraries differ. Depth is counted without recursion, on raw bytes and on decoded documents.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from alm_forecaster import close_features, json_limits
from alm_forecaster.errors import InputError
from alm_forecaster.testing.synthetic import price_series

SAME_AS_JSON_LOADS = [
    b'{"model": "m", "inputs": [{"name": "a", "series": [1.5, 2, -3e-7, 1e308]}]}',
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',  # orjson refuses NaN literals: json.loads's path
    b'{"s": "\\ud800 lone surrogate"}',
    b'{"k": 1, "k": 2}',  # the last duplicate wins, as in json.loads
    b'[1, 2.50, "x", null, true, false, {}]',
    "\ufeff".encode() + b"{}",
]


@pytest.mark.parametrize("raw", SAME_AS_JSON_LOADS)
def test_the_value_is_json_loads_value(raw):
    try:
        want = json.loads(raw)
    except ValueError:
        with pytest.raises(InputError):
            json_limits.loads(raw)
        return
    got = json_limits.loads(raw)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_an_integer_beyond_64_bits_is_its_nearest_float():
    """orjson's one difference from json.loads: the same value wherever a number is read."""
    big = 123456789012345678901234567890
    assert json_limits.loads(b'{"big": %d}' % big) == {"big": float(big)}
    assert json_limits.loads(b"[1" + b"0" * 400 + b"]") == [10**400]  # beyond float64: json.loads's int


@pytest.mark.parametrize("raw", [b"{oops", b"\xff\xfe{}", b"", b"[1, 2"])
def test_not_json_is_a_400(raw):
    with pytest.raises(InputError) as caught:
        json_limits.loads(raw)
    assert caught.value.status == 400 and caught.value.reason == "bad_json"


def test_depth_is_counted_without_recursion():
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(InputError, match="200000 deep; at most 16") as caught:
        json_limits.loads(deep)
    assert caught.value.reason == "json_too_deep"
    assert json_limits.raw_depth(b'{"a": "[[[[[[", "b": [[1]]}') == 3  # brackets inside strings do not count
    nested: object = 1
    for _ in range(json_limits.MAX_DEPTH):
        nested = [nested]
    json_limits.check_depth(nested)  # exactly the limit
    with pytest.raises(InputError, match="17 deep"):
        json_limits.check_depth([nested])
    json_limits.check_depth({"inputs": [{"series": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}]})  # values: not walked


def test_panel_features_are_each_series_features():
    """The features of many series at once, at their last rows, are each series' own features
    at all its rows (training's path), bit for bit."""
    ys = np.stack([np.log(price_series(300, seed=k)[1]) for k in range(12)])
    at_once, sigma = close_features.panel_features(ys, last=20)
    for k, y in enumerate(ys):
        alone, sigma_alone = close_features.features(y)
        np.testing.assert_array_equal(at_once[k], alone[-20:])
        np.testing.assert_array_equal(sigma[k], sigma_alone[-20:])
    full, _ = close_features.panel_features(ys)
    assert np.isnan(full[:, : close_features.LOOKBACK]).all() and np.isfinite(full[:, close_features.LOOKBACK :]).all()


def test_the_single_price_fast_path_reads_what_the_checked_path_reads():
    """prices.fast_panel takes the usual Date,<value> file; anything else is left to the checked
    path (None), and what it takes it reads exactly as the checked path does."""
    from alm_forecaster import prices
    from alm_forecaster.kinds import LEVEL, PRICE
    from alm_forecaster.table import read_table
    from alm_forecaster.testing.synthetic import price_csv

    text = price_csv(300, seed=3).decode()
    fast = prices.fast_panel(text, 274)
    checked = prices.panel(read_table(text), 274)
    np.testing.assert_array_equal(fast.values, checked.values)
    assert (fast.names, fast.labels, fast.anchors.tolist()) == (checked.names, checked.labels, checked.anchors.tolist())
    lines = text.splitlines()
    for unusual in (
        [lines[0], *lines[1:100], lines[100].replace(",", ",-", 1), *lines[101:]],  # a refused price
        [lines[0], *lines[1:100], "2020/05/04," + lines[100].split(",")[1], *lines[101:]],  # a bad date
        [lines[0], *lines[1:100], lines[99], *lines[101:]],  # a repeated date
        ["Date,Adj Close,Close", *[line + ",1.0" for line in lines[1:]]],  # three columns
        [lines[0], *lines[1:100], lines[100].split(",")[0] + ",1_000", *lines[101:]],  # float() would read it
        [lines[0], *lines[1:100], lines[100] + ",", *lines[101:]],  # a ragged line
    ):
        assert prices.fast_panel("\n".join(unusual) + "\n", 274) is None
    repeated = "Date,Yield\n" + "\n".join(f"{d},-0.5" for d in ["2020-01-01", "2020-01-02", "2020-01-02"])
    assert prices.fast_panel(repeated, 2, LEVEL) is None and prices.fast_panel(repeated, 1, LEVEL) is not None
    assert prices.fast_panel(text, 274, PRICE) is not None


def test_a_request_s_values_read_at_once_are_each_series_own():
    """kserve reads every series' numbers as one array; each series gets exactly its values, and
    a bad value fails only its series, named by its own index (not the position in the array)."""
    from alm_forecaster import kserve
    from alm_forecaster.kinds import LEVEL, PRICE

    good = [price_series(30 + k, seed=k)[1].tolist() for k in range(4)]
    bad = {1: (7, -2.0), 3: (0, 0), 4: (5, 1e400)}  # non-positive prices; an integer beyond float64
    inputs = []
    for k in range(6):
        values = list(good[k % 4])
        if k in bad:
            position, value = bad[k]
            values[position] = int("9" * 401) if value == 1e400 else value
        kind = "level" if k == 5 else "price"
        inputs.append({"name": f"s{k}", "type": "univariate_time_series", "frequency": "D",
                       "start_timestamp": "2024-01-01", "series": values, "kind": kind})  # fmt: skip
    inputs[5]["series"][2] = -4.0  # a level may be negative
    document = kserve.parse({"model": "m", "inputs": inputs}, (PRICE.name, LEVEL.name))
    panel = document.panel
    for k in (0, 2, 5):
        assert panel.errors[k] is None
        expected = np.array(inputs[k]["series"], dtype=np.float64)
        np.testing.assert_array_equal(panel.values[k, panel.values.shape[1] - len(expected) :], expected)
    assert panel.errors[1].param == "inputs[1].series[7]" and panel.errors[1].reason == "non_positive_price"
    assert panel.errors[3].param == "inputs[3].series[0]" and panel.errors[3].reason == "non_positive_price"
    assert panel.errors[4].param == "inputs[4].series[5]" and "finite" in panel.errors[4].message


def test_an_answer_is_written_as_json_dumps_would_write_its_values():
    """Outcome.json (orjson, json.dumps for what orjson refuses) holds json.dumps's values."""
    from alm_forecaster.outcome import Outcome

    forecast = {"outputs": [{"mean_forecast": [1.0000000000000002, 1e-300, 5e300, -0.0], "name": "é\u2028"}]}
    for body in (forecast, {"echo": 2**70, "x": [1, 2]}, {"error": "x", "code": 422}):
        written = Outcome(200, body).json()
        assert isinstance(written, bytes)
        assert json.loads(written) == json.loads(json.dumps(body)) == body
