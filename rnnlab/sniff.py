"""Finding the table inside a text file: which line is the header, what separates the fields.

Weather services rarely export a bare CSV: a station name and its coordinates come first, or a
paragraph of free text, or a header written as a comment (``# date,tmax``); station ``.txt`` files
align their columns with spaces and put a row of units under the header. :func:`find_layout`
looks at the first lines only (at most ``SNIFF_LINES`` lines of at most ``MAX_LINE_CHARS``
characters, so a hostile file costs no more than a small one) and returns a :class:`Layout`:

    layout = find_layout(text)
    layout.header_line, layout.delimiter, layout.names, layout.units

The header is the first line whose field count the data rows below it share.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from rnnlab.errors import NotACSVError

SNIFF_LINES = 400  # lines looked at to find the header: preambles are a few dozen lines at most
MAX_LINE_CHARS = 1 << 16  # 256 columns of 256 characters; a longer line is not a weather table
DELIMITERS = (",", ";", "\t", "|")  # in order of preference when two fit equally well
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", None: "aligned with spaces"}
FOLLOW_ROWS = 5  # the header must be followed by this many data rows in a row (fewer if the file is shorter)

# a value as it appears in a cell: a number, maybe with a flag glued to it, or a date/time
_VALUE = re.compile(r"^[\"']?[-+]?(\d+[.,]?\d*|[.,]\d+)([eE][-+]?\d+)?[A-Za-z*#!?$]{0,3}[\"']?$")
_DATE_LIKE = re.compile(r"^[\"']?\d{1,4}[-/.:]\d{1,2}([-/.:T ]\S*)*[\"']?$")


@dataclass
class Layout:
    """Where the table is in the text.

    delimiter: ",", ";", "\\t", "|", or None for a table aligned with spaces (then ``colspecs``
        gives each column's [start, stop) character positions; stop None = to the end of the line).
    header_line: 0-based line index of the header; ``data_line`` the first line after it (and after
        the units row, when there is one).
    names: the header's fields as written (stripped, a leading '#' removed); units: the units row's
        fields by column ('' where none), or None.
    """

    delimiter: str | None
    header_line: int
    data_line: int
    names: list[str]
    units: list[str] | None
    colspecs: list[tuple[int, int | None]] | None
    trailing_delimiter: bool
    hash_header: bool

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))


def sample_lines(text: str) -> list[str]:
    """The first SNIFF_LINES lines; NotACSVError when one is too long to be a table row."""
    lines = text.split("\n", SNIFF_LINES)[:SNIFF_LINES]
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            raise NotACSVError(f"Line {number} is {len(line):,} characters long, more than any weather table row "
                               f"({MAX_LINE_CHARS:,}): this is not a table rnnlab can read.")
    return lines


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return [field.strip() for field in next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])]


def _is_value(field: str) -> bool:
    return bool(_VALUE.match(field) or _DATE_LIKE.match(field))


_UNIT_WORDS = {"degc", "degf", "°c", "°f", "c", "f", "k", "mm", "cm", "in", "inch", "m", "km", "m/s", "km/h", "kmh",
               "mph", "kt", "kts", "knots", "hpa", "mbar", "mb", "pa", "kpa", "%", "w/m2", "w/m²", "j/cm2", "h",
               "hours", "hrs", "min", "days", "deg", "°", "kg/m2", "g/kg", "g/m3", "ppm", "µg/m³", "ug/m3"}


def _is_units_row(fields: list[str], width: int) -> bool:
    """A row of units under the header: no values, and blanks where a column has no unit or known units only."""
    present = [f for f in fields if f]
    if not present or len(fields) > width or any(_is_value(f) for f in present):
        return False
    known = all(f.strip("()[]").strip().lower() in _UNIT_WORDS for f in present)
    return known or len(present) < width


def _without_hash(line: str) -> str:
    return line.lstrip()[1:] if line.lstrip().startswith("#") else line


def _find_header(lines: list[str], delimiter: str | None):
    """(header index, units index or None, data field count, trailing delimiter) or None."""
    fields = [_split(_without_hash(line), delimiter) if line.strip() else [] for line in lines]
    counts = [len(f) for f in fields]
    filled = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if len(filled) < 2:
        return None
    # the data rows fill the bottom of the sample: their field count is the common one there
    tail = [counts[i] for i in filled[len(filled) // 4:]]
    width, _ = Counter(tail).most_common(1)[0]
    if width < 2:
        return None

    def is_data(i):
        if i >= len(lines) or counts[i] < width or lines[i].lstrip().startswith("#"):
            return False
        if delimiter is not None and counts[i] != width:
            return False
        return any(_is_value(f) for f in fields[i][:width])

    for i, line in enumerate(lines):
        header_width = counts[i]
        trailing = False
        if delimiter is not None and header_width == width - 1:
            trailing = True  # every data row ends with a delimiter the header does not have
        elif header_width != width:
            continue
        if any(_is_value(f) for f in fields[i] if f) or not any(fields[i]):
            continue  # a header names its columns; a row of numbers is data
        units = None
        start = i + 1
        if start < len(lines) and _is_units_row(fields[start], width) and is_data(start + 1):
            units, start = start, start + 1
        following = range(start, min(start + FOLLOW_ROWS, len(lines)))
        # the rows right under a header are data (a ragged one among them is reported when read), with no
        # blank line between: a metadata line and its values, then a blank line, is not the header
        if not following or not is_data(start) or any(not lines[j].strip() for j in following):
            continue
        if sum(is_data(j) for j in following) < 0.6 * len(following):
            continue
        if trailing and any(fields[j][-1] for j in following if is_data(j)):
            continue
        return i, units, width, trailing
    return None


def _colspecs(lines: list[str], rows: list[int], width: int):
    """Column [start, stop) positions of a table aligned with spaces, or None when they are unclear.

    A column runs from the first character any of ``rows`` has in it to the next column's first
    character, so a flag glued after a right-aligned number stays with its number.
    """
    longest = max(len(lines[i]) for i in rows)
    covered = bytearray(longest)
    for i in rows:
        for position, char in enumerate(lines[i]):
            if not char.isspace():
                covered[position] = 1
    starts = [p for p in range(longest) if covered[p] and (p == 0 or not covered[p - 1])]
    if len(starts) != width:
        return None
    return [(start, stop) for start, stop in zip(starts, starts[1:] + [None])]


def find_layout(text: str) -> Layout | None:
    """The layout of the table in ``text`` (newlines already '\\n'), or None when no line is a header."""
    lines = sample_lines(text)
    found = []
    for delimiter in DELIMITERS:
        header = _find_header(lines, delimiter)
        if header is not None:
            found.append((header[2], -DELIMITERS.index(delimiter), delimiter, header))
    if found:
        _, _, delimiter, (header_line, units_line, width, trailing) = max(found)
        names = _split(_without_hash(lines[header_line]), delimiter)
        units = _split(lines[units_line], delimiter) if units_line is not None else None
        data_line = (units_line if units_line is not None else header_line) + 1
        if not trailing and len(names) > 1 and names[-1] == "" and all(
                _split(line, delimiter)[-1:] == [""] for line in lines[data_line:data_line + FOLLOW_ROWS] if line.strip()):
            names, trailing = names[:-1], True  # the header ends with the delimiter too
        return Layout(delimiter, header_line, data_line, names, units, None, trailing,
                      lines[header_line].lstrip().startswith("#"))
    header = _find_header(lines, None)
    if header is None:
        return None
    header_line, units_line, width, _ = header
    data_line = (units_line if units_line is not None else header_line) + 1
    data_rows = [i for i in range(data_line, len(lines)) if len(lines[i].split()) == width]
    colspecs = _colspecs(lines, data_rows + [header_line] + ([units_line] if units_line is not None else []), width)
    names = lines[header_line].split()
    if colspecs is not None:
        names = [_without_hash(lines[header_line])[a:b].strip() for a, b in colspecs] if len(names) != width else names
    units = None
    if units_line is not None:
        line = lines[units_line]
        units = [line[a:b].strip() for a, b in colspecs] if colspecs else line.split()
        if len(units) != width:
            units = None
    return Layout(None, header_line, data_line, [n.lstrip("#").strip() for n in names], units, colspecs, False,
                  lines[header_line].lstrip().startswith("#"))


def split_fixed_width(text: str, layout: Layout) -> tuple[dict[int, pd.Series], int]:
    """The data rows of a space-aligned table as {column index: cell text}, and how many rows had trailing text.

    Cells are cut at ``layout.colspecs`` when the columns are clear (vectorized: a 10 MB file takes
    about a second), else at runs of spaces. Words after the last column (like ``Provisional``) are
    dropped and counted.
    """
    width = len(layout.names)
    lines = pd.Series(text.split("\n")[layout.data_line:], dtype="str")
    stripped = lines.str.strip()
    lines = lines[(stripped != "") & ~stripped.str.startswith("#")].reset_index(drop=True)
    if layout.colspecs is not None:
        cells = {i: lines.str.slice(a, b).str.strip() for i, (a, b) in enumerate(layout.colspecs)}
    else:
        parts = lines.str.split(n=width - 1)
        cells = {i: parts.str.get(i).fillna("") for i in range(width)}
    last = cells[width - 1]
    more = last.str.contains(r"\s", regex=True)
    cells[width - 1] = last.str.replace(r"\s.*$", "", regex=True)
    return cells, int(more.sum())
