"""The reproducible analysis bundle (pure: no Django).

A zip with the tidy reads (``reads.csv``), the exact parameters (``parameters.json``), the
numbers (``results.json``), the package versions they were computed with
(``versions.json``), a copy of the pure code that computed them (``studies/analysis/`` and
``studies/report/``) and ``reproduce.py``. Unzipped anywhere with Python, numpy, pandas,
scipy and statsmodels installed::

    python reproduce.py

recomputes every number from ``reads.csv`` and exits 0 when all equal ``results.json``
within a relative tolerance of 1e-6 (``--rtol``), 1 otherwise, listing the differences.
Closed-form numbers and the seeded bootstraps reproduce exactly; the iterative ordinal
model's standard errors move by ~1e-7 with the BLAS kernels (OpenBLAS core type), hence
the tolerance.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import zipfile
from pathlib import Path
from typing import Any

STUDIES_DIR = Path(__file__).resolve().parent
PACKAGES = ("numpy", "pandas", "scipy", "statsmodels")
DATA_FILES = ("reads.csv", "parameters.json", "results.json")

REPRODUCE = '''#!/usr/bin/env python3
"""Recompute every number of this analysis from reads.csv and compare with results.json.

Usage: python reproduce.py [--rtol 1e-6]. Needs numpy, pandas, scipy and statsmodels (the
versions used are in versions.json); the analysis code is the copy in ./studies. Exit
status 0 when every number matches, 1 when any differs.
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from studies.report import compare_results, compute_results, load_reads  # noqa: E402


def count_numbers(obj):
    if isinstance(obj, dict):
        return sum(count_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(count_numbers(v) for v in obj)
    return int(isinstance(obj, (int, float)) and not isinstance(obj, bool))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-6,
        help="relative tolerance (iterative fits vary ~1e-7 with the BLAS kernels)",
    )
    args = parser.parse_args(argv)
    params = json.loads((HERE / "parameters.json").read_text())
    expected = json.loads((HERE / "results.json").read_text())
    versions = json.loads((HERE / "versions.json").read_text())
    for name, wanted in versions.get("packages", {}).items():
        module = __import__(name)
        if getattr(module, "__version__", wanted) != wanted:
            print(f"note: {name} {module.__version__} here, {wanted} in the original run")
    actual = compute_results(load_reads(HERE / "reads.csv"), params)
    actual = json.loads(json.dumps(actual))
    differences = compare_results(expected, actual, rel=args.rtol)
    if differences:
        print(f"FAILED: {len(differences)} difference(s) from results.json")
        for line in differences[:50]:
            print("  " + line)
        return 1
    print(f"OK: all {count_numbers(expected)} numbers in results.json reproduced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

README = """Reproducible analysis bundle ({title})

  python reproduce.py        # exit 0: every number in results.json reproduced
                             # (relative tolerance 1e-6; --rtol to change it)

reads.csv        the tidy reads table (one row per read and question)
parameters.json  the exact analysis parameters (analyses, reference arm, seed, n_boot, ...)
results.json     every number of the report
versions.json    Python and package versions of the original run
studies/         the analysis code used (studies.analysis and studies.report, no Django)

Requirements: Python {python} with {packages}.
"""


def package_versions() -> dict[str, Any]:
    """Python and the numeric packages' versions (what the numbers depend on)."""
    return {
        "python": platform.python_version(),
        "packages": {name: importlib.metadata.version(name) for name in PACKAGES},
    }


def _code_files() -> list[tuple[Path, str]]:
    files = []
    for package in ("report", "analysis"):
        for path in sorted((STUDIES_DIR / package).glob("*.py")):
            files.append((path, f"studies/{package}/{path.name}"))
    return files


def build_bundle(out_dir: str | Path, title: str = "analysis") -> Path:
    """Write ``bundle.zip`` in ``out_dir`` from the report files already there."""
    out = Path(out_dir)
    versions = package_versions()
    target = out / "bundle.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in DATA_FILES:
            zf.write(out / name, name)
        zf.writestr("versions.json", json.dumps(versions, indent=2, sort_keys=True))
        zf.writestr("reproduce.py", REPRODUCE)
        zf.writestr(
            "README.txt",
            README.format(
                title=title,
                python=versions["python"],
                packages=", ".join(f"{k} {v}" for k, v in versions["packages"].items()),
            ),
        )
        zf.writestr("studies/__init__.py", '"""Pure analysis code of the bundle."""\n')
        for path, arcname in _code_files():
            zf.write(path, arcname)
    return target
