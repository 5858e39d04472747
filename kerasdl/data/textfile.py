"""Reading the text files people really have: their encoding, their delimiter, their quoting.

Encoding (`decode`): a given encoding (`--set data.encoding=NAME`) is used strictly;
otherwise a byte-order mark decides (UTF-8, UTF-16, UTF-32), then strict UTF-8, and a
file that is not UTF-8 is read as Windows-1252 (latin-1 for the five bytes cp1252 leaves
undefined) with a note naming the file, the line and how to override. This rule is
written out rather than taken from `charset-normalizer` because a statistical guess
varies with the sample: on a short latin-1 table it may answer cp1250 or mac-roman and
misread accents silently, while "UTF-8, else cp1252" is predictable and says so.

Delimiter (`choose_delimiter`): the extension decides (`.tsv`/`.tab` tab, `.csv`
comma). Other extensions are sniffed with `csv.Sniffer`, among the candidates the header
line actually contains; a guess absent from the header is never taken. When the header
of a `.csv`/`.tsv` lacks the extension's delimiter (a `;` CSV from a European Excel),
the one it has is used, with a note: the extension's would read one column.

Quoting (`quoting_for`): tab-separated files are read with `csv.QUOTE_NONE`, because
TSV files such as GLUE's SST-2 hold unbalanced `"` in their texts that would otherwise
swallow the lines up to the next quote, unless every header field is quoted (R's
`write.table` quotes all fields); CSV files use standard quoting.
"""

import codecs
import csv
import os

from kerasdl.data.source import DataError

# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# What spreadsheets on Windows write when they do not write UTF-8.
FALLBACK_ENCODING = "cp1252"
EXTENSION_DELIMITERS = {".tsv": "\t", ".tab": "\t", ".csv": ","}
# Sniffed for other extensions, in order of preference on a tie.
CANDIDATE_DELIMITERS = "\t,;|"
ENCODING_HINT = "pass the file's encoding with --set data.encoding=NAME (e.g. utf-8, cp1252, latin-1, utf-16)"


def check_encoding(encoding):
    """Raises `DataError` unless `encoding` names a Python codec (None passes).

    Example:
    >>> check_encoding("latin-1")
    """
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise DataError(f"data.encoding {encoding!r} is not a known encoding; use e.g. utf-8, cp1252, latin-1 or utf-16") from None


def read_text(path, encoding=None):
    """Reads a whole text file and returns `(text, encoding_used)`; see the module docstring.

    Args:
        path: the file.
        encoding: a codec name to use strictly, or None to detect it.

    Raises:
        DataError: unreadable file, bytes that do not decode (file, line and encoding
            named), or NUL characters (a binary file, or UTF-16 without a byte-order mark).

    Example:
    >>> text, encoding = read_text("reviews.csv")
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror})") from None
    return decode(data, path, encoding)


def decode(data, path, encoding=None, errors="strict"):
    """Decodes the bytes of `path` and returns `(text, encoding_used)`.

    With `errors="replace"` nothing is refused and no note is printed (for a peek at the
    first line, as when choosing which loader reads a file).

    Example:
    >>> decode("café".encode("cp1252"), "x.csv")
    ('café', 'cp1252')
    """
    check_encoding(encoding)
    quiet = errors != "strict"
    if encoding is None:
        encoding = next((name for mark, name in _BYTE_ORDER_MARKS if data.startswith(mark)), None)
    if encoding is not None:
        try:
            text = data.decode(encoding, errors=errors)
        except UnicodeError as error:
            start = getattr(error, "start", 0)
            line = data[:start].decode(encoding, errors="replace").count("\n") + 1
            raise DataError(f"{path}:{line}: cannot decode the file as {encoding} ({_reason(error)}); {ENCODING_HINT}") from None
    else:
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as error:
            if quiet:
                return data.decode("utf-8", errors="replace"), "utf-8"
            line = data[: error.start].count(b"\n") + 1
            try:
                text, encoding = data.decode(FALLBACK_ENCODING), FALLBACK_ENCODING
            except UnicodeDecodeError:
                text, encoding = data.decode("latin-1"), "latin-1"
            print(
                f"note: {path} is not UTF-8 (byte 0x{data[error.start]:02x} on line {line}); read it as {encoding}; "
                "if its text looks wrong, pass --set data.encoding=NAME"
            )
    # A mark the codec kept (utf-8 or utf-16-le named explicitly) is not part of the text.
    text = text.removeprefix("\ufeff")
    if not quiet and "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(
            f"{path}:{line}: holds NUL characters: a binary file, or UTF-16/32 without a byte-order mark; "
            f"save it as UTF-8, or {ENCODING_HINT}"
        )
    return text, encoding


def _reason(error):
    detail = getattr(error, "reason", None) or str(error)
    obj = getattr(error, "object", b"")
    start = getattr(error, "start", None)
    if isinstance(obj, (bytes, bytearray)) and start is not None and start < len(obj):
        return f"byte 0x{obj[start]:02x}: {detail}"
    return detail


def first_line(text):
    """The first line of `text` that is not blank ('' when there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def choose_delimiter(path, text, note=True):
    """Returns the delimiter of a table: by extension, else sniffed (see the module docstring).

    Args:
        path: the file (its extension decides first).
        text: its decoded text (the header line and a sample are read).
        note: print a note when a `.csv`/`.tsv` turns out to use another delimiter.

    Example:
    >>> choose_delimiter("sst2.tsv", 'label\\tsentence\\n1\\tit\\'s "good", really\\n')
    '\\t'
    """
    header = first_line(text)
    present = [candidate for candidate in CANDIDATE_DELIMITERS if candidate in header]
    expected = EXTENSION_DELIMITERS.get(os.path.splitext(os.fspath(path))[1].lower())
    if expected is not None:
        if expected in header or not present:
            return expected
        chosen = max(present, key=header.count)
        if note:
            print(f"note: {path}: the header has no {expected!r}; reading the file as {chosen!r}-separated")
        return chosen
    if not present:
        return ","  # One column; the column check then says what is missing.
    try:
        sniffed = csv.Sniffer().sniff(text[: 64 * 1024], delimiters="".join(present)).delimiter
    except csv.Error:  # The sniffer gives up on irregular samples (commas inside texts).
        sniffed = None
    if sniffed in present:
        return sniffed
    return max(present, key=header.count)


def quoting_for(delimiter, header=""):
    """`csv.QUOTE_NONE` for tabs (TSV texts hold bare quotes), else `csv.QUOTE_MINIMAL`.

    A tab-separated file whose header fields are all quoted (R's `write.table`, or Python's
    `csv.writer` with `QUOTE_ALL`) does quote its fields, and is read with standard quoting.

    Example:
    >>> quoting_for("\t", 'label\tsentence') == csv.QUOTE_NONE
    True
    """
    if delimiter != "\t":
        return csv.QUOTE_MINIMAL
    fields = [field.strip() for field in header.split("\t")]
    if all(len(field) >= 2 and field[0] == field[-1] == '"' for field in fields):
        return csv.QUOTE_MINIMAL
    return csv.QUOTE_NONE
