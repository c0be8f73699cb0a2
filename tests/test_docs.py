"""The documentation builds with warnings as errors (as CI builds it), a broken reference fails that build, and the
README stays a front page whose results table is the generated report's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"


def sphinx(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``sphinx-build -W --keep-going -b html`` with this interpreter; ``extra`` goes before the two folders."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", *extra, str(source), str(out)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    result = sphinx(DOCS, tmp_path / "html", "-d", str(tmp_path / "doctrees"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    html = tmp_path / "html"
    for page in ["index", "keywords", "api", "export", "methods", "results/td3_100k"]:
        assert (html / f"{page}.html").is_file(), page
    keywords = (html / "keywords.html").read_text()
    assert "drop_fraction" in keywords and "sb3_dst.dstd3.DSTD3" in keywords  # autodoc ran
    # a table written from a result file, and a generated report included in its campaign's page
    assert "overhead_learn_tqc.json" in (html / "methods.html").read_text()
    report = (REPO / "benchmarks/results/td3_100k/report.md").read_text()
    first_row = next(line for line in report.splitlines() if line.startswith("| HalfCheetah-v5 | DS-TD3 |"))
    assert first_row.split(" | ")[3] in (html / "results/td3_100k.html").read_text()


def test_broken_reference_fails_the_build(tmp_path: Path) -> None:
    """The same configuration on a one-page project with a link to a page that does not exist: the build fails."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.md").write_text("# Index\n\nSee [a page that does not exist](no_such_page.md).\n")
    result = sphinx(source, tmp_path / "html", "-c", str(DOCS), "-d", str(tmp_path / "doctrees"))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no_such_page" in result.stderr, result.stderr


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; details belong in docs/"


def test_readme_results_table_is_the_generated_reports() -> None:
    """Each row of the README's results table is a line of the report it names, character for character."""
    text = README.read_text()
    table = re.search(r"<!-- results-table-begin -->\n(.*?)<!-- results-table-end -->", text, flags=re.S)
    assert table, "README.md has no results table between its markers"
    reports = re.findall(r"`(benchmarks/results/[\w.-]+/report\.md)`", text[: table.start()])
    assert reports, "the results table's introduction names no report"
    report = (REPO / reports[-1]).read_text().splitlines()
    rows = [line for line in table.group(1).splitlines() if line.strip()]
    assert len(rows) > 2
    missing = [row for row in rows if row not in report]
    assert not missing, f"rows not in {reports[-1]} (regenerate it or copy its table again): {missing}"
