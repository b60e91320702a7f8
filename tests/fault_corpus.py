"""A corpus of malformed measured-pattern files mixed with good ones, written into a folder.

Each :class:`CorpusFile` says what ``python -m inference.predict`` must make of it: ``problem`` is a
phrase its error message must contain (the message also names the file), or None for a file that
must get an answer. The good files are variants (separators, encodings, line endings, order,
extra columns) of the patterns handed in: measured ones from the shared xred folder when present,
else simulated ones.
"""
from __future__ import annotations

import gzip
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

XRED = Path(__file__).resolve().parents[2] / "shared" / "data" / "experimental" / "xred"


@dataclass(frozen=True)
class CorpusFile:
    """One corpus entry: its path and the phrase its error must contain (None: it must get an answer)."""

    path: Path
    problem: str | None

    @property
    def good(self) -> bool:
        return self.problem is None


def xred_patterns(limit: int = 3) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, 2-theta, intensity) of the first ``limit`` xred patterns; [] when the folder is absent."""
    out = []
    for path in sorted(XRED.glob("*/data.csv"))[:limit]:
        data = np.loadtxt(path, delimiter=",", ndmin=2)
        out.append((path.parent.name, data[:, 0], data[:, 1]))
    return out


def _lines(x, y, sep=" ", fmt="{:.4f}{sep}{:.6g}") -> list[str]:
    return [fmt.format(a, b, sep=sep) for a, b in zip(x, y)]


def _text(lines: list[str], newline: str = "\n") -> str:
    return newline.join(lines) + newline


def write_fault_corpus(folder: Path, patterns: list[tuple[str, np.ndarray, np.ndarray]]) -> list[CorpusFile]:
    """Write the corpus into ``folder``; ``patterns`` (name, 2-theta in degrees (N,), intensity (N,)), at
    least one, with 2-theta covering most of 10..80 degrees, are the sources of the good files."""
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[CorpusFile] = []

    def put(name: str, content: str | bytes, problem: str | None) -> Path:
        path = folder / name
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        entries.append(CorpusFile(path, problem))
        return path

    name0, x, y = patterns[0]
    y = np.asarray(y, dtype=np.float64)
    base = _lines(x, y)
    n = len(base)
    mid = n // 2

    # ---- good files: every source pattern as .xy, and variants of the first one
    for name, xs, ys in patterns:
        put(f"good_{name}.xy", _text(_lines(xs, ys)), None)
    put("good_comma.csv", _text(["2theta,intensity"] + _lines(x, y, sep=",")), None)
    put("good_tab_esd.xye", _text(["'instrument header", "2theta\tintensity\tesd"]
                                  + [f"{a:.4f}\t{b:.6g}\t{np.sqrt(abs(b)):.3f}" for a, b in zip(x, y)]), None)
    put("good_crlf.txt", _text(base, "\r\n"), None)
    put("good_bom.xy", "\ufeff" + _text(base), None)
    put("good_utf16.xy", _text(["# wavelength: 1.5406"] + base).encode("utf-16"), None)  # with byte-order mark
    put("good_descending.xy", _text(base[::-1]), None)
    put("good_decimal_comma.txt", _text([f"{a:.4f};{b:.6g}".replace(".", ",") for a, b in zip(x, y)]), None)
    put("good_mixed_separators.dat", _text([line.replace(" ", [",", "\t", ";", " , "][i % 4])
                                            for i, line in enumerate(base)]), None)
    put("good_latin1_header.xy", ("# Messung 2\u03b8 / \u00b0, Probe M\u00fcller\n" + _text(base)).encode("latin-1",
                                                                                                      "replace"), None)
    put("good_some_negative.xy", _text(_lines(x, y - np.percentile(y, 20))), None)  # background subtracted
    put("good_wrong_extension.png", _text(base), None)  # text content under an odd name is read as text

    # ---- malformed files
    put("empty.xy", "", "empty file")
    put("blank_lines.xy", "\n  \n\t\n", "empty file")
    put("only_header.xy", "# wavelength: 1.5406\n2theta intensity\n", "no data lines")
    put("only_comments.csv", "# exported\n# nothing else\n", "no data lines")
    put("one_column.xy", _text([f"{b:.6g}" for b in y[:200]]), "one column only")
    put("nan.xy", _text(base[:mid] + [f"{x[mid]:.4f} nan"] + base[mid + 1:]), "non-finite intensity")
    put("inf.xy", _text(base[:mid] + [f"{x[mid]:.4f} inf"] + base[mid + 1:]), "non-finite intensity")
    put("overflow_exponent.xy", _text(base[:mid] + [f"{x[mid]:.4f} 1e400"] + base[mid + 1:]), "non-finite intensity")
    put("nan_angle.xy", _text(base[:mid] + [f"nan {y[mid]:.6g}"] + base[mid + 1:]), "non-finite 2-theta")
    put("huge_positive.xy", _text(base[:mid] + [f"{x[mid]:.4f} 1.7e308"] + base[mid + 1:]), "sane range")
    put("huge_negative.xy", _text(base[:mid] + [f"{x[mid]:.4f} -1.7e308"] + base[mid + 1:]), "sane range")
    put("all_negative.xy", _text(_lines(x, -1.0 - y)), "no positive intensity")
    put("all_zero.xy", _text(_lines(x, np.zeros_like(y))), "no positive intensity")
    shuffled = list(base)
    shuffled[mid], shuffled[mid + 5] = shuffled[mid + 5], shuffled[mid]
    put("non_monotonic.xy", _text(shuffled), "not strictly increasing")
    put("duplicated_angle.xy", _text(base[:mid] + [base[mid]] + base[mid:]), "not strictly increasing")
    put("decimal_comma_ambiguous.xy", _text([f"{a:.2f} 1,{int(b) % 1000:03d}.5" for a, b in zip(x, y)]),
        "decimal commas")
    put("decimal_comma_mixed.csv", _text([f"{a:.4f},{b:.0f}" for a, b in zip(x[:mid], y[:mid])]
                                         + [f"{a:.4f} {b:.2f}".replace(".", ",") for a, b in zip(x[mid:], y[mid:])]),
        "mixes decimal commas")
    put("binary_garbage.xy", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
        + b"\x00" * 16, "binary data")
    put("png_as_xy.xy", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "binary data")
    put("gzip.xy", gzip.compress(_text(base).encode()), "gzip-compressed")
    put("gzip_named.xy.gz", gzip.compress(_text(base).encode()), "gzip-compressed")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pattern.xy", _text(base))
    put("archive.xy", buffer.getvalue(), "zip archive")
    put("xml.xy", '<?xml version="1.0"?>\n<xrdMeasurements>\n<intensities>1 2 3</intensities>\n'
                  "</xrdMeasurements>\n", "XML")
    put("html.txt", "<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "XML")
    put("json.xy", '{"two_theta": [10, 11, 12], "intensity": [1, 2, 3]}\n', "no data lines")
    put("too_few_points.xy", _text(base[:: max(1, n // 8)]), "measured points fall inside")
    put("single_point.xy", f"{x[mid]:.4f} {y[mid]:.6g}\n", "only one data point")
    put("angles_beyond_180.xy", _text(_lines(np.linspace(150.0, 200.0, 500), y[:500] if n >= 500 else
                                             np.resize(y, 500))), "outside 0..180")
    put("negative_angles.xy", _text(_lines(np.linspace(-20.0, 60.0, 800), np.resize(y, 800))), "outside 0..180")
    put("radians.xy", _text(_lines(np.radians(x), y)), "measured points fall inside")
    d = 1.5406 / (2.0 * np.sin(np.radians(x) / 2.0))
    put("d_spacing.csv", _text(["d-spacing,intensity"] + _lines(d, y, sep=",")), "d-spacing")
    put("d_spacing_angstrom.xy", _text(["# d(A)  I(counts)"] + _lines(d[::-1], y[::-1])), "d-spacing")
    put("garbage_in_data.xy", _text(base[:mid] + ["this is not data"] + base[mid:]), f"line {mid + 1}")
    put("missing_intensity.xy", _text(base[:mid] + [f"{x[mid]:.4f}"] + base[mid + 1:]), f"line {mid + 1}")
    put("unicode_minus.xy", _text(base[:mid] + [f"{x[mid]:.4f} \u22125.0"] + base[mid + 1:]), f"line {mid + 1}")
    put("long_line.xy", "x" * 3_000_000 + "\n", "no data lines")
    put("lost_line_breaks.xy", " ".join(base) + "\n", "numbers on one line")
    put("long_garbage_line.xy", _text(base[:mid] + ["1.0 " + "z" * 2_000_000] + base[mid:]), f"line {mid + 1}")
    put("wrong_extension.xrdml", _text(base), ".xrdml")
    directory = folder / "directory.xy"
    directory.mkdir()
    entries.append(CorpusFile(directory, "a directory"))
    entries.append(CorpusFile(folder / "missing.xy", "file not found"))
    dangling = folder / "dangling_link.xy"
    dangling.symlink_to(folder / "nowhere.xy")
    entries.append(CorpusFile(dangling, "file not found"))
    if os.geteuid() != 0:  # root reads every file: no permission problem to show
        locked = put("unreadable.xy", _text(base), "cannot be read")
        locked.chmod(0)
    return entries
