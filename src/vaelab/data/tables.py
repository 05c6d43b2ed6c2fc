"""Tables: a user's .csv, .tsv, .txt or .parquet file as ``(N, D)`` float32 features.

Text is parsed by ``pyarrow.csv``'s streaming reader (multi-threaded, each feature column
straight to float32), a block of rows at a time; Parquet by ``pyarrow.parquet``, a group of
column chunks at a time. Either way the values are copied into one preallocated C-contiguous
``(N, D)`` array and pyarrow's buffers are dropped as soon as they are copied: the peak memory
is the output plus pyarrow's working set, 1.7-2.0x the float32 output for ~200 MB files against
5.8-7.8x for pyarrow's own readers followed by one conversion (``benchmarks/read_tables.py``).
No Python code runs per row.

Every mistake in a file is one :class:`~vaelab.errors.DataError` line that starts with the path
and names the row, the column and the value where there is one. Rows are counted as a person
counts them in a spreadsheet: ``data row 1`` is the first row below the header (the first line
of a file without one); blank lines are not counted.
"""

from __future__ import annotations

import csv
import functools
import importlib
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.data.source import RawData, first_line
from vaelab.errors import DataError, InvalidArgumentError


class _OnFirstUse:
    """A module imported when one of its names is first looked up. Every command imports this
    module, but only one that reads a table needs pyarrow, whose import would otherwise be
    part of every command's start-up."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


pa = _OnFirstUse("pyarrow")
pc = _OnFirstUse("pyarrow.compute")
pa_csv = _OnFirstUse("pyarrow.csv")
pq = _OnFirstUse("pyarrow.parquet")

__all__ = ["TABLE_SUFFIXES", "read_table"]

# Text tables: the delimiter each suffix means. A .txt file is tab-separated when its first row
# holds a tab, else space-separated (what numpy.savetxt writes by default).
TEXT_DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = (*TEXT_DELIMITERS, *PARQUET_SUFFIXES)


@functools.cache
def _null_tokens() -> frozenset[str]:
    """Cells pyarrow reads as missing (its default null_values: "", "NA", "NaN", "null", ...).
    They can appear in a data row, so they never make a first row a header."""
    return frozenset(pa_csv.ConvertOptions().null_values)


# What pandas names a DataFrame's index when it writes one: to_csv leaves it unnamed, and a
# file read back and written again calls it "Unnamed: 0"; to_parquet stores a non-default
# index as the column "__index_level_0__".
PANDAS_INDEX_NAMES = ("", "Unnamed: 0")
PARQUET_INDEX_NAME = "__index_level_0__"
UTF8_BOM = b"\xef\xbb\xbf"  # Excel starts its "CSV UTF-8" files with it; pyarrow skips it
_SNIFF_BYTES = 1 << 16
_CSV_BLOCK_BYTES = 1 << 20  # pyarrow's default: the rows handed over at a time (tests shrink it)
_MAX_FIRST_ROW_BYTES = 64 << 20  # a header longer than this is not a table we can read
# pyarrow decodes a Parquet column chunk from one buffer holding all of it, so reading every
# column of a large row group at once would hold the whole file in memory: columns are read in
# groups of about this many compressed bytes.
_PARQUET_GROUP_BYTES = 32 << 20
_LISTED = 12  # names an error lists before "... and k more"


def read_table(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    label_column: str | None = None,
    drop_missing: bool = False,
    *,
    header: bool | None = None,
    every_row: bool = False,
    id_column: str | None = None,
) -> RawData:
    """Read a table of examples (one per row) as float32 features, labels and row ids.

    ``.csv`` (comma-separated), ``.tsv`` (tabs), ``.txt`` (tabs, or spaces when the first row
    has no tab) and ``.parquet``/``.pq``; text must be UTF-8.

    - Header: by default a first row with any field that is neither a number nor a missing-
      value marker (empty, NA, NaN, ...) is a header, as is pandas' ``,0,1,2,...`` (an unnamed
      index over the default column names); a file without one gets the names ``col0``,
      ``col1``, ... ``header`` forces either reading. Duplicated or empty names are errors.
    - Ids: ``id_column`` names a column that becomes ``ids`` (its values as they are, never a
      feature). Without it, an unnamed first column (or pandas' ``Unnamed: 0``; Parquet's
      ``__index_level_0__``) is never a feature: holding exactly 0..N-1 it is dropped with a
      notice, otherwise it becomes ``ids``; and a column named ``id`` (in any case) becomes
      ``ids`` with a notice: a row number or key as a feature would make rows far down the
      file look unusual. Naming such a column in ``columns`` makes it a feature.
    - ``columns`` picks the features, in the order given (default: every column but the label
      and the index), and each must be numeric; other columns are then not read at all.
      ``label_column`` becomes ``labels``, int64 when every value is an integer, else the
      values' text. Unknown names are errors listing the columns there are.
    - Missing cells (empty, NA, NaN, ...; in features or the label) are an error naming the
      first one, or with ``drop_missing=True`` their rows are dropped with a notice. Infinite
      values (or numbers beyond float32's range) are always an error.
    - Ragged rows, non-numeric features, an empty file and a header without rows are errors.
      A single data row is read as ``(1, D)``: splitting it is the caller's problem.

    - ``every_row=True`` reads new rows that each need an answer (``vaelab encode``/``score``):
      a file without the label column is unlabelled rather than an error, and a missing cell
      is refused without suggesting to drop its row.

    ``describe()`` adds ``format``, ``delimiter``, ``header`` (what was decided),
    ``index_column`` (``None``, ``"dropped"`` or ``"ids"``), ``drop_missing``,
    ``n_rows_in_file`` and ``n_rows_dropped``. New data is read the same way by
    ``read_table(new, columns=d["columns"], label_column=d["label_name"], header=d["header"],
    drop_missing=d["drop_missing"])``.
    """
    path = Path(path).expanduser()
    wanted = _check_arguments(columns, label_column, drop_missing, header, id_column)
    _check_file(path)
    ids = _IdChoice(path, id_column, label_column, wanted, every_row)
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        if header is not None:
            raise InvalidArgumentError(
                f"header applies to text tables, not to the Parquet file {path}"
            )
        parts = _read_parquet(path, wanted, label_column, ids, every_row)
    elif suffix in TEXT_DELIMITERS:
        delimiter = TEXT_DELIMITERS[suffix]
        parts = _read_text(path, delimiter, wanted, label_column, ids, header, every_row)
    else:
        raise DataError(
            f"{path}: unsupported table type {suffix or '(no suffix)'!r} "
            f"(use {', '.join(TABLE_SUFFIXES)})"
        )
    label = label_column if parts.label is not None else None  # None: read without one
    return _finish(path, parts, label, drop_missing, every_row, asked=id_column is not None)


# --------------------------------------------------------------------------- arguments, file


def _check_arguments(columns, label_column, drop_missing, header, id_column) -> list[str] | None:
    if label_column is not None and not isinstance(label_column, str):
        raise InvalidArgumentError(f"label_column must be a column name, got {label_column!r}")
    if id_column is not None and not isinstance(id_column, str):
        raise InvalidArgumentError(f"id_column must be a column name, got {id_column!r}")
    if id_column is not None and id_column == label_column:
        raise InvalidArgumentError(
            f"column {id_column!r} cannot be both the --id-column and the --label-column"
        )
    if not isinstance(drop_missing, bool):
        raise InvalidArgumentError(f"drop_missing must be True or False, got {drop_missing!r}")
    if header not in (None, True, False):
        raise InvalidArgumentError(f"header must be None, True or False, got {header!r}")
    if columns is None:
        return None
    # A lone string is a sequence of characters: refuse it rather than read columns "a", "b".
    if isinstance(columns, str | bytes) or not all(isinstance(c, str) for c in columns):
        raise InvalidArgumentError(f"columns must be a list of column names, got {columns!r}")
    wanted = list(columns)
    if not wanted:
        raise InvalidArgumentError("columns is empty: name at least one feature column")
    repeated = [c for c, k in Counter(wanted).items() if k > 1]
    if repeated:
        raise InvalidArgumentError(f"--columns names {_names(repeated)} more than once")
    for name, option in ((label_column, "--label-column"), (id_column, "--id-column")):
        if name in wanted:
            raise InvalidArgumentError(
                f"column {name!r} cannot be both the {option} and a feature (--columns)"
            )
    return wanted


class _IdChoice:
    """Which column holds the rows' ids: the one asked for, else a pandas index or ``id``."""

    def __init__(self, path, asked, label_column, wanted, every_row):
        self.path, self.asked, self.every_row = path, asked, every_row
        self.taken = {label_column, *(wanted or [])}  # named as something else: not an id

    def __call__(self, names: list[str], index: str | None) -> str | None:
        """The id column among ``names``, given the format's index column ``index``."""
        if self.asked is not None:
            if self.asked in names:
                return self.asked
            if self.every_row:
                return None  # new rows may come without their ids
            raise DataError(
                f"{self.path}: no id column {self.asked!r}; the columns are {_names(names)}"
            )
        if index is None:
            index = next((n for n in names if n.strip().lower() == "id"), None)
        return None if index in self.taken else index


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a table file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


def _names(names: Sequence[str], limit: int = _LISTED) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = len(names) - limit
    return shown + (f" ... and {more} more" if more > 0 else "")


class _Parts:
    """What a format-specific reader hands to :func:`_finish`."""

    def __init__(
        self,
        values: np.ndarray,
        features: list[str],
        label: pa.ChunkedArray | None,
        index: tuple[str, pa.ChunkedArray] | None,
        row_ref: Callable[[int], str],
        details: dict[str, Any],
        finite: bool,
    ):
        self.values = values  # (N, D) float32; missing cells are NaN
        self.features = features
        self.label = label
        self.index_name, self.index = index if index is not None else (None, None)
        self.row_ref = row_ref  # 0-based row → "data row 3 (...)"
        self.details = details
        self.finite = finite  # every value finite (checked while filling): nothing to look for
        self.notices: list[str] = []


_SEPARATOR_HINT = (
    "; is the file separated by another character? (.csv: ',', or ';' when the first row has "
    "no comma; .tsv: tab)"
)
_SEPARATORS = ",;\t|"  # what a one-column file's name or cell holding one of them suggests


def _separator_hint(text: str, delimiter: str | None = None) -> str:
    """The hint when a one-column file's ``text`` holds a separator other than ``delimiter``."""
    return _SEPARATOR_HINT if any(d in text for d in _SEPARATORS if d != delimiter) else ""


def _select(
    path: Path,
    names: list[str],
    wanted: list[str] | None,
    label_column: str | None,
    index: str | None,
    hint: str = "",
) -> list[str]:
    """The feature columns: ``wanted``, or every column but the label and the index."""
    if len(names) == 1:
        hint += _separator_hint(names[0])  # a name that holds separators: another delimiter
    if label_column is not None and label_column not in names:
        raise DataError(
            f"{path}: no label column {label_column!r}; the columns are {_names(names)}{hint}"
        )
    if wanted is not None:
        missing = [c for c in wanted if c not in names]
        if missing:
            if not hint and all(c == f"col{i}" for i, c in enumerate(wanted)):
                hint = (
                    " (the columns were read from a file without a header row, so they are "
                    "named col0, col1, ...: give rows without a header row)"
                )
            raise DataError(
                f"{path}: no column {_names(missing)}; the columns are {_names(names)}{hint}"
            )
        return wanted
    features = [c for c in names if c not in (label_column, index)]
    if not features:
        others = [repr(c) for c in (label_column, index) if c is not None]
        besides = f" besides {' and '.join(others)}" if others else ""
        raise DataError(f"{path}: no feature columns{besides}")
    return features


def _present_label(names: list[str], label_column: str | None, every_row: bool) -> str | None:
    """The label column to read: new rows to answer may come without one (unlabelled)."""
    return None if every_row and label_column not in names else label_column


# --------------------------------------------------------------------------- text tables


def _first_row(path: Path) -> str:
    """The file's first bytes as text, enough to hold its first record (read until they hold a
    newline after something else); checks that they are UTF-8."""
    size = _SNIFF_BYTES
    try:
        with open(path, "rb") as f:
            while True:
                f.seek(0)
                raw = f.read(size)
                eof = len(raw) < size
                if eof or b"\n" in raw.lstrip(b"\r\n") or size >= _MAX_FIRST_ROW_BYTES:
                    break
                size *= 4
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    bom = len(UTF8_BOM) if raw.startswith(UTF8_BOM) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the end of what was read is not an error.
        if eof or e.start < len(raw) - bom - 3:
            raise DataError(
                f"{path}: not UTF-8 text (byte 0x{raw[bom + e.start]:02x} at offset "
                f"{bom + e.start}); save the file as UTF-8"
            ) from None
        text = raw[bom : bom + e.start].decode("utf-8")
    return text


def _is_number_or_missing(field: str, decimal: str = ".") -> bool:
    text = field.strip()
    if decimal != "." and "." not in text:
        text = text.replace(decimal, ".")
    if not text or text in _null_tokens():
        return True
    if "_" in text:  # Python's float() takes "1_000"; pyarrow (and a person) do not
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_header(fields: list[str], decimal: str = ".") -> bool:
    if not all(_is_number_or_missing(f, decimal) for f in fields):
        return True
    # pandas' DataFrame(array).to_csv(): an unnamed index column, then the columns 0, 1, ...
    rest = [f.strip() for f in fields[1:]]
    return not fields[0].strip() and bool(rest) and rest == [str(i) for i in range(len(rest))]


class _Layout:
    """How a text table is laid out: what pyarrow needs to read it, and how to name its rows."""

    def __init__(
        self,
        path: Path,
        names: list[str],
        skip: int,
        delimiter: str,
        header: bool,
        hint: str = "",
        every_row: bool = False,
        decimal: str = ".",
    ):
        self.path = path
        self.decimal = decimal  # the decimal mark of the numbers: "." or ","
        self.names = names  # every column, in file order
        self.skip = skip  # physical lines before the data (the header record, blank lines)
        self.delimiter = delimiter
        self.header = header
        self.hint = hint  # how the first row was read, where that may be the trouble
        self.every_row = every_row  # new rows for a trained run: its features are fixed

    def row_ref(self, i: int) -> str:
        """The 0-based data row ``i`` as a person counts it."""
        if self.header:
            return f"data row {i + 1} (1 = the first row below the header)"
        return f"row {i + 1} (1 = the first row)"

    def options(self, types: dict[str, pa.DataType], handler, use_threads: bool = True) -> dict:
        return {
            "read_options": pa_csv.ReadOptions(
                column_names=self.names,
                skip_rows=self.skip,
                use_threads=use_threads,
                block_size=_CSV_BLOCK_BYTES,
            ),
            "parse_options": pa_csv.ParseOptions(
                delimiter=self.delimiter, invalid_row_handler=handler
            ),
            "convert_options": pa_csv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                strings_can_be_null=True,
                decimal_point=self.decimal,
            ),
        }


def _read_text(
    path: Path,
    delimiter: str | None,
    wanted: list[str] | None,
    label_column: str | None,
    ids: _IdChoice,
    header: bool | None,
    every_row: bool = False,
) -> _Parts:
    text = _first_row(path)
    if delimiter is None:  # .txt
        line = text.lstrip("\r\n").split("\n", 1)[0]
        delimiter = "\t" if "\t" in line or " " not in line.strip() else " "
    delimiter, decimal, sniffed = _semicolons(text, delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        # a row of nothing but spaces is as blank as an empty one
        fields = next((row for row in reader if any(f.strip() for f in row)), None)
    except csv.Error as e:
        raise DataError(f"{path}: cannot parse the first row ({first_line(e)})") from None
    if fields is None:
        raise DataError(f"{path}: empty file (no rows, only blank lines)")
    has_header = _looks_like_header(fields, decimal) if header is None else header
    if has_header:
        names = [f.strip() for f in fields]
        skip = reader.line_num  # physical lines up to the header's end, blank ones included
        numbers = [f for f in names if f and _is_number_or_missing(f, decimal)]
        # a header of names that are numbers is rare; a data row with a text column is not
        hint = (
            f" (the first row, {_names(names[:4])}{', ...' if len(names) > 4 else ''}, was read "
            "as the header because it holds text; if it is data, pass --header no)"
            if header is None and numbers
            else ""
        )
    else:
        names = [f"col{i}" for i in range(len(fields))]
        skip = 0
        hint = " (the file has no header row, so its columns are named col0, col1, ...)"
        if header is False and _looks_like_header(fields, decimal):
            shown = ", ".join(repr(f.strip()) for f in fields[:3])
            hint = (
                f" (--header no read the first row, {shown}"
                f"{', ...' if len(fields) > 3 else ''}, as data, but it looks like column "
                "names: read it as the header with --header auto or yes)"
            )
    repeated = [n for n, k in Counter(names).items() if k > 1 and n]
    if repeated:
        raise DataError(f"{path}: duplicated column names in the header: {_names(repeated)}")
    index = ids(names, names[0] if names[0] in PANDAS_INDEX_NAMES else None) if has_header else None
    empty = [i + 1 for i, n in enumerate(names) if not n and i > 0]
    if empty:
        raise DataError(
            f"{path}: column{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} "
            f"of the header (counting from 1) {'have' if len(empty) > 1 else 'has'} no name"
        )
    layout = _Layout(path, names, skip, delimiter, has_header, hint, every_row, decimal)
    label_column = _present_label(names, label_column, every_row)
    features = _select(path, names, wanted, label_column, index, hint)
    strings = [c for c in (label_column, index) if c is not None]
    values, extra, finite, flags = _stream_csv(
        layout, features, strings, _estimate_rows(path, text)
    )
    if values.shape[0] == 0:
        raise DataError(f"{path}: a header but no data rows")
    label = extra[label_column] if label_column is not None else None
    index_col = (index, extra[index]) if index is not None else None
    details = {"format": path.suffix.lower()[1:], "delimiter": delimiter, "header": has_header}
    if decimal != ".":
        details["decimal"] = decimal
    parts = _Parts(values, features, label, index_col, layout.row_ref, details, finite)
    if sniffed:
        parts.notices.append(sniffed)
    if header is None and not has_header:
        # every field a number: data, but pandas' DataFrame(array).to_csv(index=False) writes
        # 0,1,2,... as a header, and a table of years has 2019,2020,... as its names
        parts.notices.append(
            f"read the first row ({delimiter.join(f.strip() for f in fields[:4])}"
            f"{delimiter + '...' if len(fields) > 4 else ''}) as data, the columns named "
            "col0, col1, ...; if it names the columns, pass --header yes"
        )
    elif header is None and hint:
        parts.notices.append(hint.strip(" ()"))
    if flags:
        parts.notices.append(f"read {_names(flags)} (true/false words) as 1/0")
    return parts


# a number with a decimal comma, as a whole field: "3,5", "-0,25"
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+\s*$")


def _semicolons(text: str, delimiter: str) -> tuple[str, str, str]:
    """``(delimiter, decimal mark, notice)``: a .csv whose first row holds semicolons and no
    comma but in numbers (``1,5``) is separated by ``;``, as spreadsheet programs write it
    where the comma is the decimal mark; its numbers use a decimal comma if its first rows'
    do."""
    lines = [line for line in text.splitlines() if line.strip()]
    if delimiter != "," or not lines or ";" not in lines[0]:
        return delimiter, ".", ""
    if any("," in f and not _DECIMAL_COMMA.match(f) for f in lines[0].split(";")):
        return delimiter, ".", ""  # commas outside numbers: the comma separates
    decimal = "."
    if any(_DECIMAL_COMMA.match(f) for line in lines[:3] for f in line.split(";")):
        decimal = ","
    mark = ", its numbers with a decimal comma" if decimal == "," else ""
    return ";", decimal, f"read as separated by ';'{mark} (the first row has no other comma)"


def _estimate_rows(path: Path, text: str) -> int:
    """Rows in the file, from the length of the lines at its start (a little over, usually)."""
    lines = text.count("\n")
    if lines == 0:
        return 1
    per_line = len(text.encode()) / lines
    return int(path.stat().st_size / per_line * 1.02) + 16


def _stream_csv(
    layout: _Layout, features: list[str], strings: list[str], n_estimate: int
) -> tuple[np.ndarray, dict[str, pa.ChunkedArray], bool, list[str]]:
    """The feature columns as one ``(N, D)`` float32 array (missing cells NaN), the ``strings``
    columns as text, whether every feature value is finite, and the features that held
    true/false words (pandas writes booleans as ``True``/``False``), read as 1/0.

    Features are read as numbers first; a column refused for holding only such words is read
    again as booleans (a second pass over the file, only for tables that have them).
    """
    flags: list[str] = []
    while True:
        types = {c: pa.bool_() if c in flags else pa.float32() for c in features}
        types |= {c: pa.string() for c in strings}
        ragged = _RaggedRow()
        try:
            return (*_read_blocks(layout, types, features, strings, n_estimate, ragged), flags)
        except (OSError, pa.ArrowException) as e:
            more = _boolean_columns_or_raise(layout, e, ragged, types)
            if set(more) <= set(flags):  # cannot happen: the same columns refused twice
                raise DataError(f"{layout.path}: cannot read {_names(more)}") from None
            flags += more


def _read_blocks(
    layout: _Layout,
    types: dict[str, pa.DataType],
    features: list[str],
    strings: list[str],
    n_estimate: int,
    ragged: _RaggedRow,
) -> tuple[np.ndarray, dict[str, pa.ChunkedArray], bool]:
    """One streaming read (see :func:`_stream_csv`).

    pyarrow hands over a block of rows at a time; each is copied into the output and dropped,
    so only the output and a few blocks are ever held. The output starts at an estimate of N
    and is resized in place (realloc: no copy for large arrays) when the estimate is off.
    """
    d = len(features)
    out = np.empty((max(n_estimate, 1), d), dtype=np.float32)
    pieces: dict[str, list[pa.Array]] = {c: [] for c in strings}
    finite = True
    start = 0
    # closed on the way out: a reader left to the garbage collector after an error in its
    # read-ahead thread aborts the interpreter at exit
    with pa_csv.open_csv(layout.path, **layout.options(types, ragged)) as reader:
        for batch in reader:
            stop = start + batch.num_rows
            if stop > out.shape[0]:
                out.resize((max(stop, out.shape[0] * 3 // 2), d), refcheck=False)
            block = out[start:stop]  # (rows, D) view
            for j in range(d):
                block[:, j] = _as_float(batch.column(j))
            finite = finite and bool(np.isfinite(block).all())
            for c in strings:
                pieces[c].append(batch.column(c))
            start = stop
            del block
    out.resize((start, d), refcheck=False)
    extra = {c: pa.chunked_array(pieces[c], type=pa.string()) for c in strings}
    return out, extra, finite


class _RaggedRow:
    """pyarrow's invalid-row handler: remember the first ragged row, then stop the read."""

    def __init__(self) -> None:
        self.row = None

    def __call__(self, row) -> str:
        if self.row is None:
            self.row = row
        return "error"


def _boolean_columns_or_raise(
    layout: _Layout, e: Exception, ragged: _RaggedRow, types: dict
) -> list[str]:
    """One line for what pyarrow refused: a ragged row, non-UTF-8 text, non-numeric cells;
    or, where the only trouble is feature columns of true/false words, their names."""
    path = layout.path
    if ragged.row is not None:
        row = ragged.row
        if row.number is None:
            # Threaded and streaming reads do not number rows: parse again in one thread.
            again = _RaggedRow()
            try:
                pa_csv.read_csv(path, **layout.options(types, again, use_threads=False))
            except (OSError, pa.ArrowException):
                pass
            row = again.row or row
        # pyarrow numbers records from the file's start, the skipped lines included.
        where = "a row" if row.number is None else layout.row_ref(row.number - layout.skip - 1)
        text = row.text if len(row.text) <= 60 else row.text[:57] + "..."
        field_s = "field" if row.actual_columns == 1 else "fields"
        raise DataError(
            f"{path}: ragged rows: {where} has {row.actual_columns} {field_s} where the "
            f"{'header' if layout.header else 'first row'} has {row.expected_columns} "
            f"({text!r})"
        ) from None
    message = str(e)
    # "In CSV column #2: [Row #7: ]CSV conversion error to float: invalid value 'x'"
    m = re.match(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error", message)
    if m and int(m[1]) < len(layout.names):
        column = layout.names[int(m[1])]
        if "invalid UTF8" in message:
            raise DataError(
                f"{path}: column {column!r} is not UTF-8 text; save the file as UTF-8"
            ) from None
        features = [c for c, t in types.items() if t == pa.float32()]
        if column in features:
            return _boolean_columns_or_raise_non_numeric(layout, features)
    if isinstance(e, OSError):
        raise DataError(f"{path}: cannot read ({first_line(e)})") from None
    raise DataError(f"{path}: cannot parse as a table ({first_line(e)})") from None


def _first_failure(col: pa.ChunkedArray, kind: pa.DataType) -> int | None:
    """Index of the first value of a string column that does not cast to ``kind``."""
    offset = 0
    for chunk in col.chunks:
        try:
            pc.cast(chunk, kind)
        except pa.ArrowInvalid:
            # Bisect for the shortest failing prefix: the error path, O(n log n) at worst.
            lo, hi = 0, len(chunk)  # chunk[:lo] casts, chunk[:hi] does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                try:
                    pc.cast(chunk.slice(0, mid), kind)
                    lo = mid
                except pa.ArrowInvalid:
                    hi = mid
            return offset + hi - 1
        offset += len(chunk)
    return None


def _boolean_columns_or_raise_non_numeric(layout: _Layout, features: list[str]) -> list[str]:
    """Read the features again as text to name every non-numeric one and its first bad cell;
    but first return those that hold only true/false words (and missing cells), if any."""
    path = layout.path
    ragged = _RaggedRow()
    types = {c: pa.string() for c in features}
    try:
        table = pa_csv.read_csv(path, **layout.options(types, ragged))
    except (OSError, pa.ArrowException) as e:
        _boolean_columns_or_raise(layout, e, ragged, types)  # text columns: it raises
        raise  # not reached
    bad: list[str] = []
    flags: list[str] = []
    first = None
    words = pa.array(_TRUE_FALSE)
    for name in features:
        col = pc.utf8_trim_whitespace(table.column(name))  # pyarrow's number parser trims
        if layout.decimal != ".":
            col = pc.replace_substring(col, layout.decimal, ".")
        if _first_failure(col, pa.float32()) is None:
            continue
        if _only_true_false(table.column(name)):  # untrimmed: pyarrow's bool parser is exact
            flags.append(name)
            continue
        bad.append(name)
        if first is None:  # the first cell that is neither a number nor a true/false word
            i = _first_failure(pc.if_else(pc.is_in(col, words), None, col), pa.float32())
            if i is None:  # only words with spaces around them (' True'), shown as they are
                i = _first_failure(col, pa.float32())
            first = (name, i, table.column(name)[i].as_py())
    if flags:
        return flags  # read again with these as booleans; what else is bad is said then
    if first is None:  # refused by the reader, accepted by the cast: say what we know
        raise DataError(f"{path}: cannot read the columns {_names(features)} as numbers")
    name, i, value = first
    hint = _separator_hint(str(value), layout.delimiter) if len(layout.names) == 1 else ""
    hint = hint or layout.hint
    raise DataError(
        f"{path}: non-numeric column{'s' if len(bad) > 1 else ''} {_names(bad)} (the first: "
        f"{value!r} in {name!r}, {layout.row_ref(i)}); {_non_numeric_fix(bad, layout.every_row)}"
        f"{hint}"
    )


# pyarrow's default spellings of a boolean cell (ConvertOptions.true_values/false_values)
_TRUE_FALSE = ["True", "true", "TRUE", "False", "false", "FALSE", "1", "0"]


def _only_true_false(col: pa.ChunkedArray) -> bool:
    """Whether every present cell is one of pyarrow's boolean spellings (and one is a word)."""
    seen = pc.unique(col.drop_null())
    return (
        len(seen) > 0
        and bool(pc.all(pc.is_in(seen, pa.array(_TRUE_FALSE))).as_py())
        and any(v.as_py() not in ("0", "1") for v in seen)
    )


def _non_numeric_fix(bad: list[str], every_row: bool) -> str:
    """What to do about non-numeric feature columns: choose others, or (new rows for a
    trained run, whose features are fixed) give numbers."""
    if every_row:
        which = "these columns" if len(bad) > 1 else "this column"
        return f"the run was trained on {which} as numbers: these rows need numbers there"
    return (
        "choose numeric features with --columns (columns=[...]) or make it the --label-column "
        "or the --id-column"
    )


def _as_float(arr: pa.Array) -> np.ndarray:
    """A numeric arrow array as numpy floats, nulls as NaN (zero-copy for floats w/o nulls)."""
    if not pa.types.is_floating(arr.type):
        arr = pc.cast(arr, pa.float64())  # ints, bools, decimals: exact or nearest
    return arr.to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- Parquet


def _is_numeric(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
    )


def _read_parquet(
    path: Path,
    wanted: list[str] | None,
    label_column: str | None,
    ids: _IdChoice,
    every_row: bool = False,
) -> _Parts:
    try:
        pf = pq.ParquetFile(path, pre_buffer=False)
        schema = pf.schema_arrow
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a readable Parquet file ({first_line(e)})") from None
    names = list(schema.names)
    repeated = [n for n, k in Counter(names).items() if k > 1]
    if repeated:
        raise DataError(f"{path}: duplicated column names: {_names(repeated)}")
    pandas = next(
        (n for i, n in enumerate(names) if n == PARQUET_INDEX_NAME or (i == 0 and not n)), None
    )
    index = ids(names, pandas)
    label_column = _present_label(names, label_column, every_row)
    features = _select(path, names, wanted, label_column, index)
    bad = [c for c in features if not _is_numeric(schema.field(c).type)]
    if bad:
        first = schema.field(bad[0]).type
        raise DataError(
            f"{path}: non-numeric column{'s' if len(bad) > 1 else ''} {_names(bad)} (the first "
            f"holds {first}); {_non_numeric_fix(bad, every_row)}"
        )
    n = pf.metadata.num_rows
    if n == 0:
        raise DataError(f"{path}: no rows")
    try:
        values, finite = _fill_parquet(pf, features, n)
        extra = [c for c in (label_column, index) if c is not None]
        small = pf.read(columns=extra, use_threads=True) if extra else None
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read Parquet data ({first_line(e)})") from None
    label = small.column(label_column) if label_column is not None else None
    index_col = (index, small.column(index)) if index is not None else None

    def row_ref(i: int) -> str:
        return f"row {i + 1} (1 = the first row)"

    details = {"format": "parquet", "delimiter": None, "header": None}
    return _Parts(values, features, label, index_col, row_ref, details, finite)


def _fill_parquet(pf: pq.ParquetFile, features: list[str], n: int) -> tuple[np.ndarray, bool]:
    """The features as one ``(N, D)`` float32 array (nulls NaN) and whether all are finite."""
    out = np.empty((n, len(features)), dtype=np.float32)
    position = {f: j for j, f in enumerate(features)}
    finite = True
    start = 0
    for g in range(pf.metadata.num_row_groups):
        group = pf.metadata.row_group(g)
        size = {
            group.column(i).path_in_schema: group.column(i).total_compressed_size
            for i in range(group.num_columns)
        }
        for names in _byte_groups(features, size):
            part = pf.read_row_group(g, columns=names, use_threads=True)
            for name in names:
                j, row = position[name], start
                for arr in part.column(name).chunks:
                    dest = out[row : row + len(arr), j]  # strided view of one column
                    with np.errstate(over="ignore"):  # found just below, with its row
                        dest[:] = _as_float(arr)
                    # after the cast: a float64 beyond float32's range becomes inf here
                    finite = finite and bool(np.isfinite(dest).all())
                    row += len(arr)
            del part
        start += group.num_rows
    return out, finite


def _byte_groups(names: list[str], size: dict[str, int]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    total = 0
    for name in names:
        b = size.get(name, 0)
        if groups[-1] and total + b > _PARQUET_GROUP_BYTES:
            groups.append([])
            total = 0
        groups[-1].append(name)
        total += b
    return groups


# --------------------------------------------------------------------------- common checks


def _ints_or_text(path: Path, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Values without nulls as int64 when every one is an integer (1, "007", 2.0), else as
    their text (numpy str)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.utf8_trim_whitespace(col)
    try:
        # A safe cast: refuses "a", 1.5 and out-of-range values instead of rounding them.
        return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        text = pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(
            f"{path}: cannot read values of type {col.type} ({first_line(e)})"
        ) from None
    return np.asarray(text.to_pylist(), dtype=str)


def _labels(path: Path, col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(labels (N,), missing (N,) bool or None)``; a missing label's slot holds 0 or ""."""
    if not col.null_count:
        return _ints_or_text(path, col), None
    missing = col.is_null().to_numpy(zero_copy_only=False)
    present = _ints_or_text(path, pc.drop_null(col))
    labels = np.zeros(len(col), dtype=present.dtype)
    labels[~missing] = present
    return labels, missing


def _index(path: Path, name: str, col: pa.ChunkedArray, n: int, notices: list[str], asked: bool):
    """``(ids or None, "dropped" | "ids")`` for the id column: the one asked for (kept as it
    is), a pandas index (dropped when it holds 0..N-1) or a column named ``id``."""
    pandas = name in PANDAS_INDEX_NAMES or name == PARQUET_INDEX_NAME
    if not name:
        what = "the unnamed first column"
    else:
        what = f"the {'index ' if pandas else ''}column {name!r}"
    ids = _ints_or_text(path, col) if not col.null_count else None
    if pandas and ids is not None and ids.dtype.kind == "i" and np.array_equal(ids, np.arange(n)):
        notices.append(f"dropped {what}: it holds the row numbers 0..{n - 1}")
        return None, "dropped"
    if ids is None:  # some cells empty: keep every id as text, "" for the empty ones
        text = pc.fill_null(pc.cast(col, pa.string()), "")
        ids = np.asarray(text.to_pylist(), dtype=str)
    if not asked:
        use = "" if pandas else " (name it in --columns to make it one)"
        notices.append(f"read {what} as row ids, not as a feature{use}")
    return ids, "ids"


def _compact_rows(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``values[keep]`` without a second full-size array: the kept rows move up a block at a
    time, then the array is shrunk in place (``values`` owns its memory: it came from
    ``np.empty``)."""
    n, d = values.shape
    block = max(1, (1 << 20) // max(1, d))  # about 4 MiB of float32 per block
    written = 0
    for start in range(0, n, block):
        rows = values[start : start + block][keep[start : start + block]]  # (k, D) copy
        values[written : written + len(rows)] = rows
        written += len(rows)
    values.resize((written, d), refcheck=False)
    return values


def _finish(
    path: Path,
    parts: _Parts,
    label_column: str | None,
    drop_missing: bool,
    every_row: bool,
    asked: bool = False,
) -> RawData:
    values, features, row_ref = parts.values, parts.features, parts.row_ref
    n = values.shape[0]
    notices: list[str] = list(parts.notices)
    ids, index_action = None, None
    if parts.index is not None:
        ids, index_action = _index(path, parts.index_name, parts.index, n, notices, asked)
    labels, label_missing = None, None
    if parts.label is not None:
        labels, label_missing = _labels(path, parts.label)
        if every_row and label_missing is not None:
            # new rows need no label (it is never a feature): an unlabelled one is answered,
            # its label None (an empty cell in the answers' file)
            labels = labels.astype(object)
            labels[label_missing] = None
            label_missing = None

    keep = None
    # One pass over the values on the usual path; the rest only when something is off.
    if label_missing is not None or not parts.finite:
        missing = np.isnan(values).any(axis=1)
        if label_missing is not None:
            missing |= label_missing
        n_missing = int(missing.sum())
        if n_missing:
            i = int(np.argmax(missing))
            nan_in_row = np.isnan(values[i])
            column = features[int(np.argmax(nan_in_row))] if nan_in_row.any() else label_column
            if not drop_missing:
                remedy = (
                    "every row gets an answer: fill or remove them"
                    if every_row
                    else "--drop-missing, drop_missing=True, drops them"
                )
                raise DataError(
                    f"{path}: missing value (empty, NA or NaN) in column {column!r}, "
                    f"{row_ref(i)}; rows with a missing value: {n_missing} of {n} ({remedy})"
                )
            if every_row:
                # new rows for a run trained with --drop-missing: every row keeps its place,
                # the incomplete ones (NaN cells) are left unanswered by the caller
                notices.append(
                    f"{n_missing} of {n} rows have missing values: their answers are NaN (the "
                    "run was trained with --drop-missing)"
                )
            elif n_missing == n:
                raise DataError(f"{path}: every one of the {n} rows has a missing value")
            else:
                keep = ~missing
                notices.append(f"dropped {n_missing} of {n} rows with missing values")
        infinite = np.isinf(values).any(axis=1)
        if keep is not None:
            infinite &= keep
        if infinite.any():
            i = int(np.argmax(infinite))
            j = int(np.argmax(np.isinf(values[i])))
            raise DataError(
                f"{path}: infinite value {values[i, j]} in column {features[j]!r}, {row_ref(i)} "
                "(inf in the file, or a number beyond float32's range of ±3.4e38)"
            )
    if keep is not None:
        values = _compact_rows(values, keep)
        labels = None if labels is None else labels[keep]
        ids = None if ids is None else ids[keep]
    details = {
        **parts.details,
        "index_column": index_action,
        "drop_missing": drop_missing,
        "n_rows_in_file": n,
        "n_rows_dropped": 0 if keep is None else n - int(keep.sum()),
    }
    return RawData(
        values=values,
        labels=labels,
        columns=list(features),
        label_name=label_column,
        ids=ids,
        notices=notices,
        kind="table",
        file=str(path),
        details=details,
        rows=None if keep is None else np.flatnonzero(keep),
    )
