"""What a new user meets before the first call: the Makefile, the licence, the install text."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _make(*args: str, python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args, f"PYTHON={python}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["demo", "test", "docs"])
def test_make_stops_on_old_python_with_one_line(tmp_path: Path, target: str) -> None:
    old = tmp_path / "python3.9"
    # Answers the Makefile's version probe as Python 3.9 would; nothing else runs.
    old.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "sys.version_info = (3, 9, 18, 'final', 0)\n"
        "exec(sys.argv[2])\n"
    )
    old.chmod(0o755)
    ran = _make(target, python=str(old))
    assert ran.returncode != 0
    assert ran.stdout == ""
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, ran.stderr
    assert "bybit-async needs Python 3.10 or later" in lines[0]
    assert f"{old} is 3.9" in lines[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_accepts_this_python_and_shows_pip_progress() -> None:
    ran = _make("-B", "demo", python=sys.executable)
    assert ran.returncode == 0, ran.stderr
    install = next(line for line in ran.stdout.splitlines() if "pip install" in line)
    assert "--quiet" not in install
    assert "== installing" in ran.stdout


def test_licence_matches_the_metadata() -> None:
    # Read as text: tomllib is 3.11+, and the tests run on 3.10 too.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = \{ text = "MIT" \}$', pyproject, re.MULTILINE)
    assert '"License :: OSI Approved :: MIT License"' in pyproject
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} bybit-async contributors$", licence, re.MULTILINE)


def test_install_text_does_not_send_users_to_an_index_without_the_package() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        text = page.read_text()
        # The index line only as what it will be once published.
        for line in re.findall(r"^pip install [^\n]*$", text, re.MULTILINE):
            assert "bybit-async" not in line.split("#")[0] or "@ git+" in line, (page, line)
        assert 'pip install ".[cli]"' in text or "pip install ." in text, page
        assert "git+" in text, page
        assert "not on PyPI" in text, page
