"""Request bytes -> a CSV table of strings, with structural errors named precisely.

Only the structure is checked here (encoding, delimiter, quoting, rectangular rows, unique
header); what the columns must contain is the data contract's job (`contract.py`). The csv
module is used rather than pandas: on a request-sized file its fixed cost is far smaller, and
every error can name its line.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass

from alm_forecaster.errors import MALFORMED, InputError

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = "\ufeff"


@dataclass(frozen=True)
class Table:
    """A rectangular CSV table: header names and data rows as strings, oldest row first.

    ``lines[n]`` is the file line (1-based, header = line 1) of data row ``n``.
    """

    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def column_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.header)}


def decode(data: bytes | bytearray | str) -> str:
    """UTF-8 text of a request body, with or without BOM; anything else is a 400."""
    if isinstance(data, str):
        text = data
    else:
        raw = bytes(data)
        if raw.startswith(_UTF16_BOMS):
            raise _malformed("The file is UTF-16 encoded; send it as UTF-8.", "encoding")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _malformed(
                f"The file is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8 (it may be Latin-1 or Windows-1252).",
                "encoding",
            ) from None
    if text.startswith(_UTF8_BOM):
        text = text[1:]
    if "\x00" in text:
        head = text[:64]
        if len(head) >= 4 and {"\x00"} in (set(head[1::2]), set(head[0::2])):  # ASCII text as UTF-16, no BOM
            raise _malformed(
                "The file looks UTF-16 encoded without a byte-order mark (every other byte is NUL); send it as UTF-8.",
                "encoding",
            )
        raise _malformed("The body contains NUL bytes: it is binary data, not a CSV file.", "not_csv")
    return text


def read_table(data: bytes | bytearray | str) -> Table:
    """Parse a request body into a rectangular table of strings (blank lines skipped)."""
    text = decode(data)
    if not text.strip():
        raise _malformed("The body is empty: expected a CSV file with a header row.", "empty")
    if text.lstrip()[:1] in ("{", "["):
        raise _malformed("The body looks like JSON; this endpoint expects a CSV file.", "not_csv")
    records = _records(text)
    header_line, header = records[0]
    header = [name.strip() for name in header]
    _check_header(header, header_line)
    rows, lines = [], []
    width = len(header)
    for line, row in records[1:]:
        if len(row) != width:
            raise _malformed(
                f"Row {len(rows) + 1} (line {line}) has {len(row)} fields but the header has {width}"
                " (a decimal comma, a thousands separator or a stray delimiter?).",
                "ragged_rows",
            )
        rows.append(row)
        lines.append(line)
    return Table(header=header, rows=rows, lines=lines)


def _records(text: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows with their line numbers. Without any quote character a CSV row is
    exactly ``line.split(",")``, which is several times faster than the csv module."""
    if '"' not in text:
        return [(number, line.split(",")) for number, line in enumerate(text.splitlines(), 1) if line]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    end = 0  # last line of the previous record: a failing record starts on the next one
    try:
        for row in reader:
            if row:
                records.append((reader.line_num, row))
            end = reader.line_num
    except csv.Error as exc:
        unclosed = " (a quote in the record starting there is never closed)" if "end of data" in str(exc) else ""
        raise _malformed(f"Malformed CSV at line {end + 1}: {exc}{unclosed}.", "malformed_csv") from None
    return records


def _check_header(header: list[str], line: int) -> None:
    if len(header) == 1:
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if delimiter in header[0]:
                raise _malformed(
                    f"The header on line {line} is separated by {label}; the contract is a comma-separated file.",
                    "wrong_delimiter",
                )
    duplicated = sorted(name for name, count in Counter(header).items() if count > 1)
    if duplicated:
        raise _malformed(f"Duplicated column names in the header: {', '.join(duplicated)}.", "duplicate_columns")


def _malformed(message: str, reason: str) -> InputError:
    return InputError(message, status=MALFORMED, reason=reason)
