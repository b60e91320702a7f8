"""Reading measured powder patterns: files from a diffractometer to a checked :class:`MeasuredPattern`.

1. :func:`read_pattern` -> :class:`MeasuredPattern` (2-theta in degrees, intensity, wavelength
   if the file states one, source path); two-column text (.xy, .xye, .csv, .txt, .dat, with
   comment and header lines), RRUFF's downloadable powder files, and instrument formats
   (.xrdml, .raw, .brml, .ras, .uxd, ...) through the optional ``geddes`` reader;
2. :func:`check_pattern`: empty files, NaNs, values beyond +-1e15, no positive intensity, non-monotonic
   angles are refused with a :class:`PatternError` naming the file and the problem (as are binary,
   compressed and markup files, and d-spacing columns, while reading).

Bringing a read pattern onto a model's input is :mod:`inference.patterns`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


TEXT_SUFFIXES = (".xy", ".xye", ".csv", ".txt", ".dat", ".asc", ".tsv", ".prn", "")
# File suffixes handed to the optional instrument-format reader (``geddes``).
INSTRUMENT_SUFFIXES = (".xrdml", ".raw", ".brml", ".ras", ".rasx", ".uxd", ".gsas", ".gsa", ".fxye",
                       ".gda", ".chi", ".cif")

_WAVELENGTH_PATTERNS = (
    # "wavelength: 1.5406", "##X-RAY WAVELENGTH=1.541838", "# lambda1: 1.540598", "_WL1=1.5406",
    # xrdml <kAlpha1 unit="Angstrom">1.5405980</kAlpha1>, Rigaku *HW_XG_WAVE_LENGTH_ALPHA1 "1.540593"
    re.compile(r"wave[\s_-]*length[^\n]{0,60}?([0-9]*\.[0-9]+)", re.IGNORECASE),
    re.compile(r"\blambda\s*1?\s*[=:]\s*([0-9]*\.[0-9]+)", re.IGNORECASE),
    re.compile(r"\b_?WL1\s*=\s*([0-9]*\.[0-9]+)", re.IGNORECASE),
    re.compile(r"<kAlpha1[^>]*>\s*([0-9]*\.[0-9]+)\s*<", re.IGNORECASE),
)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SPLIT = re.compile(r"[\s,;]+")
# Columns split by whitespace, tab or semicolon only (a comma may then be a decimal separator).
_SPLIT_NO_COMMA = re.compile(r"[\s;]+")
# A number written with a decimal comma ("123,4", "5", "-1,5e3"); no dot allowed.
_DECIMAL_COMMA_NUMBER = re.compile(r"^[+-]?(\d+(,\d*)?|,\d+)([eE][+-]?\d+)?$")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_NUMBERISH = re.compile(r"^[+-]?[\d.,]+([eE][+-]?\d+)?$")
# Largest magnitude accepted for 2-theta or intensity values; beyond it scaling overflows float32.
MAX_ABS_VALUE = 1e15
# More numbers than this on one line are not columns of one point (2-theta, intensity, esd, fits, ...).
MAX_COLUMNS = 16
# Markup (XML, HTML) at the start of a file read as text.
_MARKUP = re.compile(r"^\s*<(\?xml|!DOCTYPE|[A-Za-z])", re.IGNORECASE)
# Column names of d-spacings: "d", "d-spacing", "d_spacing", "dspacing", "d(A)", "d[Å]", "d-value".
_D_SPACING = re.compile(r"^d([-_ ]?(spacing|value))?\s*([(\[].*)?$", re.IGNORECASE)


class PatternError(ValueError):
    """A measured pattern that cannot be used; the message names the file and the problem."""

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


@dataclass
class MeasuredPattern:
    """A measured powder pattern as read from a file.

    Attributes:
        two_theta: (N,) float64 diffraction angles 2-theta, degrees, strictly increasing.
        intensity: (N,) float64 intensities (counts or arbitrary units).
        wavelength: Angstrom, or None when the file does not state it.
        source: the file it came from.
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    wavelength: float | None
    source: Path

    def __len__(self) -> int:
        return int(self.two_theta.shape[0])


def read_pattern(path: str | Path) -> MeasuredPattern:
    """Read and check one measured pattern; raises :class:`PatternError` on anything unusable."""
    path = Path(path)
    if not path.exists():
        raise PatternError(path, "file not found")
    if path.is_dir():
        raise PatternError(path, "a directory, not a pattern file")
    if not path.is_file():
        raise PatternError(path, "not a regular file")
    suffix = path.suffix.lower()
    if suffix in INSTRUMENT_SUFFIXES:
        pattern = _read_instrument(path)
    else:
        pattern = read_text_pattern(path)
    return check_pattern(pattern)


def read_text_pattern(path: str | Path) -> MeasuredPattern:
    """Two or more delimited columns (2-theta, intensity[, esd]) with optional comments and headers.

    Columns are split by whitespace, tabs, commas or semicolons; a file that writes decimal commas
    with whitespace/tab/semicolon between the columns (``5,00 123,4``) is read as such, one that
    mixes them with comma-separated columns, or dots with decimal commas, is refused.
    Lines starting with ``#``, ``!``, ``;``, ``%``, ``'`` or ``*`` are comments, non-numeric lines
    before the data are headers, ``##END`` ends the data (RRUFF). A wavelength stated in a comment
    or header ("wavelength", "lambda", RRUFF's ``##X-RAY WAVELENGTH=``) is picked up.
    """
    path = Path(path)
    text = _decode_text(path)
    if not text.strip():
        raise PatternError(path, "empty file")
    if _MARKUP.match(text):
        raise PatternError(path, "XML/HTML markup, not a two-column text pattern (XML instrument files such as "
                                 ".xrdml are read when named with their own suffix)")
    rows: list[tuple[float, float]] = []
    header: list[str] = []
    styles: dict[str, int] = {}  # "decimal_comma" / "comma_columns" -> first data line using it
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.upper().startswith("##END"):
            break
        if line[0] in "#!;%'*":
            header.append(line)
            continue
        fields, style = _split_fields(line)
        if len(fields) > MAX_COLUMNS and all(_NUMBER.match(f) for f in fields[: MAX_COLUMNS + 1]):
            raise PatternError(path, f"line {lineno}: {len(fields)} numbers on one line; expected one 2-theta, "
                                     "intensity pair per line (were the line breaks lost?)")
        if style == "ambiguous":
            raise PatternError(path, f"line {lineno}: cannot tell decimal commas from column commas in "
                                     f"{raw.strip()[:60]!r}; use a dot as decimal separator")
        numeric = [f for f in fields if _NUMBER.match(f) or f.lower() in ("nan", "inf", "-inf", "+inf")]
        if len(numeric) == len(fields) and len(fields) >= 2:
            if style != "plain":
                styles.setdefault(style, lineno)
                if len(styles) > 1:
                    raise PatternError(path, f"mixes decimal commas (line {styles['decimal_comma']}) with commas "
                                             f"between columns (line {styles['comma_columns']}); cannot tell "
                                             "which numbers are meant")
            if not rows:
                _refuse_d_spacing(path, header)
            rows.append((float(fields[0]), float(fields[1])))
            continue
        if not rows:
            if len(fields) == 1 and numeric:
                raise PatternError(path, f"line {lineno}: one column only; expected 2-theta and intensity")
            header.append(line)
            continue
        raise PatternError(path, f"line {lineno}: cannot read two numbers from {raw.strip()[:60]!r}")
    if not rows:
        raise PatternError(path, "no data lines (expected two columns: 2-theta, intensity)")
    data = np.asarray(rows, dtype=np.float64)
    return MeasuredPattern(two_theta=data[:, 0], intensity=data[:, 1],
                           wavelength=wavelength_from_text("\n".join(header)), source=path)


def _decode_text(path: Path) -> str:
    """The text of a pattern file: UTF-8 (a byte-order mark dropped), or UTF-16 with a byte-order mark;
    compressed, archived and other binary files are refused with what they are."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PatternError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if data.startswith(b"\x1f\x8b"):
        raise PatternError(path, "gzip-compressed; decompress it first (gunzip)")
    if data.startswith(b"PK\x03\x04"):
        raise PatternError(path, "a zip archive; extract the pattern file from it first")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:65536]:
        raise PatternError(path, "binary data (NUL bytes), not a text pattern; binary instrument files are read "
                                 f"by their own suffix ({', '.join(INSTRUMENT_SUFFIXES[:5])}, ...), UTF-16 text "
                                 "needs a byte-order mark")
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def _refuse_d_spacing(path: Path, header: list[str]) -> None:
    """A PatternError when the column header just before the data names d-spacings as the first column."""
    if not header:
        return
    names = [f for f in _SPLIT.split(header[-1].lstrip("#!;%'* ")) if f]
    if not 2 <= len(names) <= MAX_COLUMNS or any(_NUMBER.match(f) for f in names):
        return  # not a line of column names
    if _D_SPACING.match(names[0]):
        raise PatternError(path, f"the first column is d-spacing (header {header[-1][:60]!r}), not 2-theta; "
                                 "convert it (2-theta = 2 asin(wavelength / 2d)) or write 2-theta, intensity")


def _split_fields(line: str) -> tuple[list[str], str]:
    """The number fields of one line and how it uses commas.

    Returns (fields, style) with style "plain" (no comma), "comma_columns" (commas between columns,
    e.g. ``5.0,123`` or ``5.0, 123``), "decimal_comma" (columns split by whitespace, tab or
    semicolon with decimal commas, e.g. ``5,00 123,4`` or ``5,00;123,4``; the fields come back with
    dots) or "ambiguous" (a comma between digits next to other separators that fits neither, e.g.
    ``5.0 1,234`` or ``1,234.5 10``).
    """
    if "," not in line:
        return [f for f in _SPLIT.split(line) if f], "plain"
    tokens = [t for t in _SPLIT_NO_COMMA.split(line) if t]
    if len(tokens) >= 2 and any(_DIGIT_COMMA_DIGIT.search(t) for t in tokens):
        if all(_DECIMAL_COMMA_NUMBER.match(t) for t in tokens):
            return [t.replace(",", ".") for t in tokens], "decimal_comma"
        if all(_NUMBERISH.match(t) for t in tokens):
            return tokens, "ambiguous"  # dots and commas inside numbers: "5.0 1,234", "1,234.5 10"
    return [f for f in _SPLIT.split(line) if f], "comma_columns"


def wavelength_from_text(text: str) -> float | None:
    """The first plausible X-ray wavelength (0.1..3 Angstrom) stated in header text, else None."""
    for pattern in _WAVELENGTH_PATTERNS:
        for match in pattern.finditer(text):
            value = float(match.group(1))
            if 0.1 <= value <= 3.0:
                return value
    return None


def _read_instrument(path: Path) -> MeasuredPattern:
    try:
        import geddes
    except ImportError as exc:
        raise PatternError(path, f"reading {path.suffix} files needs the optional package 'geddes' "
                                 "(pip install 'crystalstream[instruments]')") from exc
    try:
        parsed = geddes.read(str(path))
    except Exception as exc:  # the reader's own errors carry no file name
        raise PatternError(path, f"not a readable {path.suffix} file ({exc})") from exc
    wavelength = None
    if path.suffix.lower() not in (".raw", ".brml", ".rasx"):  # text-based formats state it in the header
        try:
            wavelength = wavelength_from_text(path.read_text(encoding="utf-8", errors="replace")[:200_000])
        except OSError:
            wavelength = None
    return MeasuredPattern(two_theta=np.asarray(parsed.x, dtype=np.float64),
                           intensity=np.asarray(parsed.y, dtype=np.float64), wavelength=wavelength, source=path)


def check_pattern(pattern: MeasuredPattern) -> MeasuredPattern:
    """Refuse empty patterns, non-finite values and non-monotonic angles; a decreasing scan is reversed."""
    x = np.asarray(pattern.two_theta, dtype=np.float64).ravel()
    y = np.asarray(pattern.intensity, dtype=np.float64).ravel()
    src = pattern.source
    if x.size == 0:
        raise PatternError(src, "no data points")
    if x.shape != y.shape:
        raise PatternError(src, f"{x.size} angles but {y.size} intensities")
    if x.size < 2:
        raise PatternError(src, "only one data point")
    for name, arr in (("2-theta", x), ("intensity", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise PatternError(src, f"{int(bad.sum())} non-finite {name} value(s) (NaN or inf), first at point {i + 1}")
        huge = np.abs(arr) > MAX_ABS_VALUE
        if huge.any():
            i = int(np.argmax(huge))
            raise PatternError(src, f"{int(huge.sum())} {name} value(s) beyond the sane range +-{MAX_ABS_VALUE:g}, "
                                    f"first at point {i + 1} ({arr[i]:g})")
    if not (y > 0).any():
        raise PatternError(src, f"no positive intensity: all {y.size} values are <= 0 (intensities must be counts "
                                "or a positive scale)")
    dx = np.diff(x)
    if (dx < 0).all():
        x, y = x[::-1].copy(), y[::-1].copy()
        dx = -dx[::-1]
    if not (dx > 0).all():
        i = int(np.argmax(dx <= 0))
        raise PatternError(src, f"2-theta is not strictly increasing (point {i + 2}: {x[i + 1]:g} after {x[i]:g})")
    if x[0] < 0 or x[-1] >= 180:
        raise PatternError(src, f"2-theta range {x[0]:g}..{x[-1]:g} deg is outside 0..180")
    if pattern.wavelength is not None and not 0 < pattern.wavelength < 10:
        raise PatternError(src, f"implausible wavelength {pattern.wavelength:g} A")
    return MeasuredPattern(two_theta=x, intensity=y, wavelength=pattern.wavelength, source=Path(src))


# ------------------------------------------------------------------------------ physics of the axis


def write_xy(path: str | Path, two_theta: np.ndarray, intensity: np.ndarray, wavelength: float | None = None,
             delimiter: str = " ") -> Path:
    """Write a two-column pattern (used to export simulated patterns and in tests)."""
    path = Path(path)
    lines = []
    if wavelength is not None:
        lines.append(f"# wavelength: {wavelength:.6f}")
    lines += [f"{a:.5f}{delimiter}{b:.6g}" for a, b in zip(two_theta, intensity)]
    path.write_text("\n".join(lines) + "\n")
    return path


def nominal_step(two_theta: np.ndarray) -> float:
    """Median angular step of a scan, degrees."""
    return float(np.median(np.diff(np.asarray(two_theta, dtype=np.float64)))) if len(two_theta) > 1 else math.nan
