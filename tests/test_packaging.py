"""What `pip install .` ships: the product packages, not the bench harness or the test fixtures;
and what `revloop bench` says where the bench is not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import ROOT


@pytest.mark.slow
def test_the_wheel_holds_the_product_and_neither_the_bench_nor_the_tests(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("revloop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name}
    assert {"schemas", "revloop", "platforms", "ingest", "streams", "infra", "demo"} <= tops
    assert "bench" not in tops and "tests" not in tops
    assert not [n for n in names if "fixtures" in n or "bench" in n.split("/")[0]]
    assert "schemas/catalogue.json" in names  # package data still ships


def test_revloop_bench_without_the_bench_installed_says_how_to_get_it() -> None:
    # `bench` made unimportable, as in an environment with only the revloop wheel.
    script = (
        "import sys; sys.modules['bench'] = None; "
        "from revloop.cli import app; app(['bench', 'ingest'], prog_name='revloop')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "not installed" in done.stderr
    assert "pip install -e ./bench" in done.stderr and "make install" in done.stderr
