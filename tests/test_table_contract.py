"""The CSV data contract: every violation is an InputError naming the problem precisely."""

from __future__ import annotations

import numpy as np
import pytest

from alm_forecaster.contract import embedding_window
from alm_forecaster.errors import InputError
from alm_forecaster.table import read_table
from alm_forecaster.testing.synthetic import embeddings_csv

SIZE = 8


def window(data: bytes | str, seq_len: int = 20):
    return embedding_window(read_table(data), SIZE, seq_len)


def error(data: bytes | str, seq_len: int = 20) -> InputError:
    with pytest.raises(InputError) as info:
        window(data, seq_len)
    return info.value


def replace_cell(data: bytes, row: int, column: str, value: str) -> bytes:
    lines = data.decode().splitlines()
    col = lines[0].split(",").index(column)
    cells = lines[row].split(",")
    cells[col] = value
    lines[row] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def test_valid_file_gives_last_rows_as_window():
    data = embeddings_csv(rows=25, input_size=SIZE)
    w = window(data)
    lines = data.decode().splitlines()
    expected = np.array([[float(x) for x in line.split(",")[:SIZE]] for line in lines[6:]], dtype=np.float32)
    assert w.embeddings.shape == (20, SIZE) and w.embeddings.dtype == np.float32
    np.testing.assert_array_equal(w.embeddings, expected)
    assert w.current_price == float(lines[-1].split(",")[SIZE])


@pytest.mark.parametrize(
    "transform",
    [
        lambda d: b"\xef\xbb\xbf" + d,
        lambda d: d.replace(b"\n", b"\r\n"),
        lambda d: d.decode(),
        lambda d: d + b"\n\n",
    ],
    ids=["bom", "crlf", "str", "trailing-blank-lines"],
)
def test_accepted_variants_give_the_same_window(transform):
    data = embeddings_csv(rows=20, input_size=SIZE)
    np.testing.assert_array_equal(window(transform(data)).embeddings, window(data).embeddings)


def test_extra_columns_are_ignored():
    plain = window(embeddings_csv(input_size=SIZE))
    extra = window(embeddings_csv(input_size=SIZE, extra={"date": "2020-01-01", "note": "x y"}))
    np.testing.assert_array_equal(plain.embeddings, extra.embeddings)


def test_only_the_window_is_validated():
    data = replace_cell(embeddings_csv(rows=25, input_size=SIZE), 1, "emb_0", "garbage")
    assert window(data).embeddings.shape == (20, SIZE)


def test_too_few_rows_uses_the_seed_message():
    err = error(embeddings_csv(rows=15, input_size=SIZE))
    assert err.message == "Not enough data points. Need at least 20, got 15"
    assert (err.status, err.reason) == (422, "too_few_rows")


def test_seq_len_from_model_metadata():
    assert "Need at least 30, got 25" in error(embeddings_csv(rows=25, input_size=SIZE), seq_len=30).message


def test_missing_columns_are_all_named():
    data = embeddings_csv(input_size=SIZE).replace(b"emb_3,", b"x3,").replace(b"last_price", b"price")
    err = error(data)
    assert err.message == "Missing required columns: emb_3, last_price."
    assert err.reason == "missing_columns"


def test_many_missing_columns_are_summarised():
    with pytest.raises(InputError) as info:
        embedding_window(read_table(embeddings_csv(input_size=SIZE)), 128, 20)
    assert info.value.message == (
        "Missing required columns: emb_8, emb_9, emb_10, emb_11, emb_12, emb_13, emb_14, emb_15 "
        "and 112 more (120 in all)."
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "'abc' is not a number"),
        ("", "empty value"),
        ("nan", "'nan' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
        ("-Infinity", "'-Infinity' is not a finite number"),
        ("1e400", "'1e400' is not a finite number"),
        ("1_000", "'1_000' is not a number"),
        ("١", "'١' is not a number"),
        ("0x1A", "'0x1A' is not a number"),
    ],
)
def test_bad_value_names_row_line_and_column(value, fragment):
    data = replace_cell(embeddings_csv(rows=20, input_size=SIZE), 4, "emb_2", value)
    err = error(data)
    assert err.message.startswith("Row 4 (line 5), column 'emb_2': ")
    assert fragment in err.message
    assert (err.status, err.reason) == (422, "bad_value")


def test_float32_overflow_is_named():
    err = error(replace_cell(embeddings_csv(input_size=SIZE), 20, "emb_7", "1e39"))
    assert err.message == "Row 20 (line 21), column 'emb_7': '1e39' overflows float32."


@pytest.mark.parametrize("price", ["0", "-3.5"])
def test_non_positive_price(price):
    err = error(replace_cell(embeddings_csv(input_size=SIZE), 7, "last_price", price))
    assert err.message.startswith("Row 7 (line 8), column 'last_price': price must be positive")
    assert err.reason == "non_positive_price"


def test_missing_price_value_is_named():
    err = error(replace_cell(embeddings_csv(input_size=SIZE), 3, "last_price", " "))
    assert err.message == "Row 3 (line 4), column 'last_price': empty value."


@pytest.mark.parametrize(
    ("data", "reason", "fragment"),
    [
        (b"", "empty", "The body is empty"),
        (b"  \r\n\n", "empty", "The body is empty"),
        (b'{"emb_0": [1, 2]}', "not_csv", "looks like JSON"),
        (b"emb_0\x00,last_price\n", "not_csv", "NUL bytes"),
        ("emb_0,last_price\n1,2\n".encode("utf-16"), "encoding", "UTF-16"),
        ("emb_0,last_price,c\n1,2,é\n".encode("latin-1"), "encoding", "not valid UTF-8 (byte 0xe9 at offset 23)"),
        (b'emb_0,last_price\n"1,2\n3,4\n', "malformed_csv", "Malformed CSV at line"),
        (b"emb_0;emb_1;last_price\n1;2;3\n", "wrong_delimiter", "separated by semicolons"),
        (b"emb_0\temb_1\tlast_price\n1\t2\t3\n", "wrong_delimiter", "separated by tabs"),
        (b"emb_0,emb_0,last_price\n1,2,3\n", "duplicate_columns", "Duplicated column names in the header: emb_0."),
        (b"emb_0,last_price\n1,2\n1,5,2\n", "ragged_rows", "Row 2 (line 3) has 3 fields but the header has 2"),
    ],
)
def test_malformed_bodies_are_400_with_a_precise_reason(data, reason, fragment):
    with pytest.raises(InputError) as info:
        read_table(data)
    assert (info.value.status, info.value.reason) == (400, reason)
    assert fragment in info.value.message


def test_header_only_is_too_few_rows():
    header = embeddings_csv(rows=1, input_size=SIZE).decode().splitlines()[0]
    assert error(header + "\n").message == "Not enough data points. Need at least 20, got 0"


def test_quoted_numbers_are_accepted():
    data = embeddings_csv(input_size=SIZE)
    lines = data.decode().splitlines()
    lines[5] = ",".join(f'"{c}"' for c in lines[5].split(","))
    quoted = ("\n".join(lines) + "\n").encode()
    np.testing.assert_array_equal(window(quoted).embeddings, window(data).embeddings)
