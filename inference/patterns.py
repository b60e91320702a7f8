"""Measured powder patterns: reading, checking, and bringing them onto a model's input.

A file from a diffractometer goes through

1. :func:`read_pattern` -> :class:`MeasuredPattern` (2-theta in degrees, intensity, wavelength
   if the file states one, source path); two-column text (.xy, .xye, .csv, .txt, .dat, with
   comment and header lines), RRUFF's downloadable powder files, and instrument formats
   (.xrdml, .raw, .brml, .ras, .uxd, ...) through the optional ``geddes`` reader;
2. :func:`check_pattern`: empty files, NaNs, values beyond +-1e15, no positive intensity, non-monotonic
   angles are refused with a :class:`PatternError` naming the file and the problem (as are binary,
   compressed and markup files, and d-spacing columns, while reading);
3. :func:`prepare_pattern`: optional baseline removal, conversion of the angles through the
   d-spacing to the model's axis (2-theta at the model's wavelength, or 1/d), the
   Lorentz-polarisation ratio between the two, interpolation onto the model's grid, masking of
   the part of the grid the measurement does not cover, and finally the simulator's own
   training-time preprocessing (scaling, square root), so that a measured pattern reaches the
   network exactly as the simulated ones did during training.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

# File suffixes read as delimited text by this module.
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


@dataclass
class PatternConfig:
    """How a measured pattern is brought onto a model's input (``conf/inference/default.yaml``: ``pattern``).

    Attributes:
        min_coverage: smallest fraction of the model's grid the measurement must cover.
        min_points: fewest measured points that must fall inside the model's grid.
        baseline: background removed before anything else: "none", "min" (subtract the minimum)
            or "snip" (statistics-sensitive non-linear iterative peak clipping).
        snip_window: half-width of the SNIP clipping window, degrees 2-theta.
        lorentz_polarisation: correct intensities by the ratio of Lorentz-polarisation factors
            when the angle axis changes (wavelength conversion), or divide by it for 1/d models
            whose training patterns carry none.
    """

    min_coverage: float = 0.2
    min_points: int = 50
    baseline: str = "min"
    snip_window: float = 2.0
    lorentz_polarisation: bool = True


@dataclass(frozen=True)
class InputSpec:
    """A model's input axis and the training-time preprocessing of its patterns.

    Attributes:
        grid: (N,) float64 axis values: 2-theta in degrees (``axis="two_theta"``) or 1/d in
            1/Angstrom (``axis="inverse_d"``).
        axis: "two_theta" or "inverse_d".
        wavelength: Angstrom, for "two_theta" axes.
        preprocess: maps intensities on the grid (N,) and the (N,) bool mask of the part the scan covers
            to model inputs (N,), exactly as in training (the simulator's ``preprocess``, which also
            prepares its randomly windowed patterns).
        lorentz_polarisation: whether the training patterns carry the Lorentz-polarisation factor.
        measured_error: why no measured scan can be brought onto this input (G(r) models need
            total-scattering data), else None.

    ``inference.predict.input_spec`` builds it from a checkpoint's representation
    (:mod:`simulator.representation`), whose axis conversion and interpolation are used here.
    """

    grid: np.ndarray
    axis: str = "two_theta"
    wavelength: float | None = 1.5406
    preprocess: Callable[..., np.ndarray] = field(default=lambda y, mask=None: y, compare=False)
    lorentz_polarisation: bool = True
    measured_error: str | None = None


@dataclass
class PreparedPattern:
    """A measured pattern on a model's input.

    Attributes:
        values: (N,) float32 model input.
        mask: (N,) bool, True where the measurement covers the grid (elsewhere the input is 0).
        coverage: fraction of the grid covered.
        wavelength: the measurement wavelength that was used, Angstrom.
    """

    values: np.ndarray
    mask: np.ndarray
    coverage: float
    wavelength: float


# ----------------------------------------------------------------------------------------- reading


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


def lorentz_polarisation(two_theta: np.ndarray) -> np.ndarray:
    """(1 + cos^2 2theta) / (sin^2 theta cos theta), the unpolarised-beam powder factor."""
    theta = np.radians(np.asarray(two_theta, dtype=np.float64) / 2.0)
    return (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


def two_theta_to_inverse_d(two_theta: np.ndarray, wavelength: float) -> np.ndarray:
    """1/d = 2 sin(theta) / lambda (Bragg), 1/Angstrom."""
    return 2.0 * np.sin(np.radians(np.asarray(two_theta, dtype=np.float64) / 2.0)) / wavelength


def inverse_d_to_two_theta(inverse_d: np.ndarray, wavelength: float) -> np.ndarray:
    """2-theta in degrees of reflections at 1/d; NaN where lambda/(2d) > 1 (beyond the limiting sphere)."""
    s = np.asarray(inverse_d, dtype=np.float64) * wavelength / 2.0
    out = np.full(s.shape, np.nan)
    ok = (s >= 0) & (s <= 1)
    out[ok] = np.degrees(2.0 * np.arcsin(s[ok]))
    return out


def convert_wavelength(two_theta: np.ndarray, from_wavelength: float, to_wavelength: float) -> np.ndarray:
    """2-theta measured at ``from_wavelength`` -> 2-theta of the same d-spacing at ``to_wavelength``.

    NaN where the d-spacing is not reachable at the new wavelength.
    """
    if from_wavelength <= 0 or to_wavelength <= 0:
        raise ValueError(f"wavelengths must be positive, got {from_wavelength} and {to_wavelength}")
    return inverse_d_to_two_theta(two_theta_to_inverse_d(two_theta, from_wavelength), to_wavelength)


def snip_baseline(intensity: np.ndarray, half_window: int) -> np.ndarray:
    """SNIP background (Ryan et al. 1988) on the log-log-sqrt scale with a window of ``half_window`` points."""
    y = np.clip(np.asarray(intensity, dtype=np.float64), 0.0, None)
    v = np.log(np.log(np.sqrt(y + 1.0) + 1.0) + 1.0)
    n = v.size
    for p in range(1, max(1, int(half_window)) + 1):
        if 2 * p >= n:
            break
        mid = 0.5 * (v[: n - 2 * p] + v[2 * p:])
        v[p: n - p] = np.minimum(v[p: n - p], mid)
    return (np.exp(np.exp(v) - 1.0) - 1.0) ** 2 - 1.0


def remove_baseline(pattern: MeasuredPattern, cfg: PatternConfig) -> np.ndarray:
    """Intensity of ``pattern`` with the configured baseline removed (not clipped)."""
    y = pattern.intensity
    if cfg.baseline == "none":
        return y.copy()
    if cfg.baseline == "min":
        return y - y.min()
    if cfg.baseline == "snip":
        step = float(np.median(np.diff(pattern.two_theta)))
        return y - snip_baseline(y, int(round(cfg.snip_window / max(step, 1e-9))))
    raise ValueError(f"unknown baseline {cfg.baseline!r}: expected 'none', 'min' or 'snip'")


# ----------------------------------------------------------------------------------- onto the grid


def prepare_pattern(pattern: MeasuredPattern, spec: InputSpec, cfg: PatternConfig,
                    wavelength: float | None = None) -> PreparedPattern:
    """Bring a checked measured pattern onto a model's input.

    Args:
        wavelength: measurement wavelength in Angstrom; None: the file's, else the model's
            (for 1/d models without a wavelength of their own a wavelength must be known).

    Raises:
        PatternError: when the pattern covers too little of the model's grid.
    """
    from simulator.representation import MeasuredDataError, measured_on_axis, onto_grid

    src = pattern.source
    if spec.measured_error:
        raise PatternError(src, spec.measured_error)
    wl = wavelength if wavelength is not None else pattern.wavelength
    if wl is None:
        wl = spec.wavelength
    if wl is None:
        raise PatternError(src, "the measurement wavelength is unknown: give it with --wavelength")
    y = remove_baseline(pattern, cfg)
    grid = np.asarray(spec.grid, dtype=np.float64)
    try:  # through the d-spacing onto the model's axis (the representation's own conversion)
        x, y = measured_on_axis(spec.axis, pattern.two_theta, y, float(wl), spec.wavelength,
                                spec.lorentz_polarisation, cfg.lorentz_polarisation)
    except MeasuredDataError as err:
        raise PatternError(src, str(err)) from err
    inside = (x >= grid[0]) & (x <= grid[-1])
    n_inside = int(inside.sum())
    if n_inside < cfg.min_points:
        raise PatternError(src, f"only {n_inside} measured points fall inside the model's range "
                                f"{_axis_range(spec)} (at least {cfg.min_points} needed)")
    mask = (grid >= x.min()) & (grid <= x.max())
    coverage = float(mask.mean())
    if coverage < cfg.min_coverage:
        lo, hi = (pattern.two_theta[0], pattern.two_theta[-1])
        raise PatternError(src, f"the measured range {lo:g}..{hi:g} deg 2-theta covers {coverage:.0%} of the "
                                f"model's range {_axis_range(spec)} (at least {cfg.min_coverage:.0%} needed)")
    on_grid, mask = onto_grid(grid, x, y)
    if not on_grid.any():
        raise PatternError(src, "no signal inside the model's range after baseline removal")
    if not np.isfinite(on_grid).all():
        raise PatternError(src, "overflow while bringing the intensities onto the model's grid (values too large)")
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(spec.preprocess(on_grid, mask), dtype=np.float32)
    if values.shape != grid.shape:
        raise ValueError(f"{src}: preprocessing returned {values.shape} values, expected {grid.shape}")
    if not np.isfinite(values).all():
        raise PatternError(src, "overflow in scaling: preprocessing gave non-finite values (intensities too large)")
    return PreparedPattern(values=values, mask=mask, coverage=coverage, wavelength=float(wl))


def _axis_range(spec: InputSpec) -> str:
    unit = {"two_theta": "deg 2-theta", "inverse_d": "1/A", "r": "A"}.get(spec.axis, spec.axis)
    return f"{spec.grid[0]:g}..{spec.grid[-1]:g} {unit}"


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
