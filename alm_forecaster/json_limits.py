"""How large and how deep a JSON request may be: checked before the body is decoded and after.

    raw body (the handler asks TorchServe not to decode JSON: its json.loads costs more than
    the forward of a large request)
      -> orjson (about 5x faster than json.loads, depth-limited without recursion): the usual
         document, then its depth checked as below
      -> anything orjson refuses (NaN literals, a number beyond float64, lone surrogates, too
         deep, not JSON) takes the standard library's path, so that the answer is what
         json.loads gives: nesting depth counted without decoding (strings blanked, brackets
         summed), over MAX_DEPTH a 400 ``json_too_deep`` naming the limit before json.loads can
         recurse; then json.loads; not JSON, or not UTF-8: a 400 ``bad_json``
      -> one difference stays: orjson reads an integer beyond 64 bits as the nearest float, where
         json.loads keeps an int: the same value in a series; an option that must be an integer
         says it is not one (a 4xx either way)
    decoded document (TorchServe decodes application/json bodies itself)
      -> the same depth limit, walked without recursion (a series' values are not walked:
         each must be a number, and the protocol refuses any other value on its own)
    then kserve.py checks the sizes as it reads the document: inputs (MAX_SERIES), values per
    series (MAX_VALUES), name length (MAX_NAME), options (MAX_OPTIONS keys, MAX_LEVELS levels):
    over a limit is a 400 ``json_too_large`` naming the field and the limit.

The body's total size is capped before any of this by TorchServe (max_request_size, 10 MiB, 413).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import orjson

from alm_forecaster.errors import MALFORMED, InputError

#: Nesting levels: a ForecastRequest nests 4 deep (document, inputs, an input, its series), a
#: book request 5 (options, scenarios, exposures); the rest is headroom for extra fields.
MAX_DEPTH = 16
#: Series in one request.
MAX_SERIES = 1000
#: Values in one series (20 years of business days and more).
MAX_VALUES = 20_000
#: Characters in a series name.
MAX_NAME = 256
#: Keys in ``options``, and quantile levels in ``options.quantiles``.
MAX_OPTIONS = 32
MAX_LEVELS = 99

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def loads(raw: bytes | bytearray | str) -> object:
    """The JSON value of a raw body (orjson's, else json.loads's); a 400 naming the problem when
    it is nested too deep or is not JSON."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # the standard library's path below decides, and names the problem
    depth = raw_depth(data)
    if depth > MAX_DEPTH:
        raise too_deep(depth)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"the body is not valid JSON ({exc})", status=MALFORMED, reason="bad_json", param="") from None


def raw_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, without decoding it (brackets
    inside strings do not count)."""
    codes = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    steps = np.isin(codes, _OPEN).astype(np.int64) - np.isin(codes, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def check_depth(document: object) -> None:
    """Refuse a decoded document nested deeper than MAX_DEPTH (iteratively: a deep document must
    not exhaust the stack that checks it)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep(depth)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for k, v in value.items() if k != "series" and isinstance(v, list | dict))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, list | dict))


def finite_number(value: int | float) -> bool:
    """A JSON number that is a finite float64 (an integer too large for one is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def too_deep(depth: int) -> InputError:
    return InputError(
        f"the document nests arrays and objects {depth} deep; at most {MAX_DEPTH} levels are accepted",
        status=MALFORMED,
        reason="json_too_deep",
        param="",
    )


def too_large(param: str, what: str, count: int, limit: int) -> InputError:
    """A 400 for a field over its limit: ``'inputs' has 1001 series; at most 1000``."""
    return InputError(
        f"'{param}' has {count} {what}; at most {limit} are accepted",
        status=MALFORMED,
        reason="json_too_large",
        param=param,
    )
