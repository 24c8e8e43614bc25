"""Property-based fuzzing of the request parser: for any bytes, a window or an InputError.

Short profile in CI; the long one (>= 10,000 examples each) by
    FUZZ_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz_parser.py
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alm_forecaster.contract import Window, canonical_header, embedding_window, fast_embedding_window
from alm_forecaster.errors import InputError
from alm_forecaster.table import decode, read_table
from alm_forecaster.testing.synthetic import embeddings_csv

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FUZZ_PROFILE", "ci"))

SIZE = 4
SEQ = 3
VALID = embeddings_csv(rows=5, input_size=SIZE, seed=0)


def parse(data: bytes) -> Window | InputError:
    """The checked path's answer; the fast path (numpy's reader) must agree whenever it answers."""
    try:
        checked = embedding_window(read_table(data), SIZE, SEQ)
    except InputError as exc:
        assert exc.status in (400, 422)
        assert exc.message and exc.reason
        checked = exc
    try:
        fast = fast_embedding_window(decode(data), canonical_header(SIZE), SEQ)
    except InputError:  # undecodable: the checked path refused it too
        assert isinstance(checked, InputError)
        return checked
    if fast is not None:
        assert isinstance(checked, Window), f"the fast path accepted what the checked path refuses: {checked}"
        assert np.array_equal(fast.embeddings, checked.embeddings) and fast.current_price == checked.current_price
    return checked


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_window_or_an_input_error(data):
    parse(data)


CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="0123456789.,;-+eE_ \"'\tnaif\x00é١", max_size=8),
    st.just(""),
)


@given(
    st.lists(st.lists(CELL, min_size=SIZE - 1, max_size=SIZE + 3), max_size=7),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
def test_near_valid_tables(rows, delimiter, newline, bom):
    header = delimiter.join([f"emb_{i}" for i in range(SIZE)] + ["last_price"])
    text = newline.join([header] + [delimiter.join(r) for r in rows]) + newline
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    result = parse(data)
    if isinstance(result, Window):
        assert result.embeddings.shape == (SEQ, SIZE) and np.isfinite(result.embeddings).all()
        assert result.current_price > 0


@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.binary(min_size=1, max_size=4))
def test_mutated_valid_file(position, insert):
    parse(VALID[:position] + insert + VALID[position + 1 :])


# A number wrapped in any whitespace or control characters (no-break space, '\x1c'..'\x1f', ...):
# str.strip() removes more than float() and the ASCII screen accept, which once made the
# cell-by-cell scan disagree with the fast path (an AssertionError, a 500 on the server).
PADDING = st.text(
    alphabet=st.characters(categories=["Zs", "Zl", "Zp", "Cc", "Cf"], exclude_characters='\x00,"\r\n'), max_size=3
)


@given(PADDING, st.floats(allow_nan=False, allow_infinity=False).map(repr), PADDING, st.integers(0, SEQ - 1))
def test_padded_numbers_give_a_window_or_an_input_error(before, number, after, row):
    lines = VALID.decode().splitlines()
    cells = lines[len(lines) - SEQ + row].split(",")
    cells[1] = before + number + after
    lines[len(lines) - SEQ + row] = ",".join(cells)
    result = parse(("\n".join(lines) + "\n").encode())
    if isinstance(result, InputError) and result.status == 422:  # 400: a line break among the padding
        assert "column 'emb_1'" in result.message, result.message


# Numbers as spreadsheets and scripts write them, with stray spaces and signs: the fast path
# must read each exactly as float() does, or leave the file to the checked path.
NUMBER = st.tuples(
    st.sampled_from(["", " ", "\t", "  "]),
    st.sampled_from(["", "+", "-"]),
    st.one_of(
        st.floats(min_value=1e-300, max_value=1e30).map(repr),
        st.floats(min_value=1e-6, max_value=1e6).map(lambda x: f"{x:.17e}"),
        st.floats(min_value=1e-6, max_value=1e6).map(lambda x: f"{x:.3f}"),
        st.integers(0, 10**25).map(str),
        st.text(alphabet="0123456789.eE+-", min_size=1, max_size=12),
    ),
    st.sampled_from(["", " ", "\t"]),
).map("".join)


@given(st.lists(st.lists(NUMBER, min_size=SIZE + 1, max_size=SIZE + 1), min_size=SEQ, max_size=SEQ + 2))
def test_fast_path_reads_numbers_as_the_checked_path_does(rows):
    header = ",".join([f"emb_{i}" for i in range(SIZE)] + ["last_price"])
    parse(("\n".join([header] + [",".join(r) for r in rows]) + "\n").encode())


def test_the_fast_path_takes_the_usual_file():
    text = VALID.decode()
    fast = fast_embedding_window(text, canonical_header(SIZE), SEQ)
    checked = embedding_window(read_table(VALID), SIZE, SEQ)
    assert fast is not None and np.array_equal(fast.embeddings, checked.embeddings)
    assert fast.current_price == checked.current_price


@pytest.mark.parametrize("cell", ["0.0\x1f", "\x1c1.5", "1_000", "١", "", " ", "nan", "1e400", '"1.5"', "1.5#2"])
def test_the_fast_path_leaves_unusual_cells_to_the_checked_path(cell):
    lines = VALID.decode().splitlines()
    cells = lines[-1].split(",")
    cells[1] = cell
    data = ("\n".join([*lines[:-1], ",".join(cells)]) + "\n").encode()
    assert fast_embedding_window(decode(data), canonical_header(SIZE), SEQ) is None
    parse(data)  # and the checked path answers on its own
