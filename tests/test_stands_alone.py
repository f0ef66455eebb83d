"""The repository stands alone: no tracked file reads or cites a path outside the checkout.

A user, a contributor and a packager only ever have the repository, so a reference to a sibling
folder or to a design document that is not in it is a broken link (or, in a test, a test that
cannot run on a fresh clone).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        [
            re.escape("../" + "shared"),
            re.escape("shared/" + "argocd"),
            re.escape("shared/" + "alertmanager"),
            "DESIGN" + r"(\.md)? ?§",
            "API" + "-NOTES",
        ]
    )
)


def _tracked_text_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / name for name in listing.decode().split("\0") if name]


def _outside_references(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found.append(f"{shown}:{number}: {line.strip()[:120]}")
    return found


def test_no_tracked_file_points_outside_the_repository() -> None:
    found = _outside_references(_tracked_text_files())
    assert not found, "tracked files point outside the repository:\n" + "\n".join(found)


def test_the_check_finds_each_forbidden_reference(tmp_path: Path) -> None:
    samples = {
        "a.py": "ROOT / '../" + "shared/x.json'",
        "b.md": "see DESIGN" + ".md §6",
        "c.py": "# DESIGN" + " §3",
        "d.py": "(API" + "-NOTES §8)",
        "e.py": "'shared/" + "argocd/examples'",
        "ok.py": "shared state; designs; notes on the API",
    }
    for name, text in samples.items():
        (tmp_path / name).write_text(text + "\n")
    found = _outside_references([tmp_path / name for name in samples])
    assert sorted(Path(line.split(":")[0]).name for line in found) == ["a.py", "b.md", "c.py", "d.py", "e.py"]


def test_fixtures_carry_their_provenance() -> None:
    for system in ("argocd", "alertmanager"):
        source = REPO / "tests" / "fixtures" / system / "SOURCE.md"
        assert source.is_file(), f"{source} is missing"
        text = source.read_text()
        assert "licence" in text.lower() or "license" in text.lower(), f"{source} names no licence"
