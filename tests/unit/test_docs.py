"""The documentation holds together: README.md is a landing page, every relative link in it
and in docs/ reaches a file (and a heading, for a ``#fragment``), every ``make`` target the
text names exists, and no topic has two sections (each heading once across the pages)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 150

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_MAKE = re.compile(r"\bmake\s+(?:-\S+\s+)*(?:[A-Z_]+=\S*\s+)*([a-z][a-z0-9-]*)")


def _prose(text: str) -> str:
    """The text without code: a link or heading inside code is not one."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _code(text: str) -> str:
    return "\n".join(_FENCE.findall(text) + _INLINE_CODE.findall(_FENCE.sub("", text)))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = _INLINE_CODE.sub(lambda m: m.group()[1:-1], heading.strip()).lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def _headings(page: Path) -> list[str]:
    return [
        line.lstrip("#").strip()
        for line in _FENCE.sub("", page.read_text()).splitlines()
        if line.startswith("#")
    ]


def _links() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in PAGES
        for target in _LINK.findall(_prose(page.read_text()))
        if not re.match(r"^[a-z]+:", target)  # http:, https:, mailto:
    ]


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", makefile, re.MULTILINE))


@pytest.mark.parametrize(
    ("page", "target"), [pytest.param(p, t, id=f"{p.name}->{t}") for p, t in _links()]
)
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    # Given a relative link in README.md or docs/
    path, _, fragment = target.partition("#")
    # When it is followed from the page's folder
    destination = (page.parent / path).resolve() if path else page
    # Then the file exists, and a fragment names one of its headings
    assert destination.exists(), f"{page.name}: {target} leads nowhere"
    if fragment:
        anchors = {_anchor(heading) for heading in _headings(destination)}
        assert fragment in anchors, f"{page.name}: no heading #{fragment} in {destination.name}"


def test_every_make_target_the_docs_name_exists() -> None:
    # Given every `make <target>` in the code of README.md and docs/
    named = {
        (page.name, target) for page in PAGES for target in _MAKE.findall(_code(page.read_text()))
    }
    # When compared with the Makefile's targets / Then each exists
    missing = sorted((page, target) for page, target in named if target not in _make_targets())
    assert named, "no make target found: the pattern is broken"
    assert missing == []


def test_each_topic_has_one_section() -> None:
    # Given every page's headings (but BENCHMARKS.md's: `make bench` writes them, one per
    # measurement, and SCALE.md explains what they mean)
    seen: dict[str, str] = {}
    repeated = []
    for page in (page for page in PAGES if page.name != "BENCHMARKS.md"):
        for heading in _headings(page):
            if heading.lower() in seen:
                repeated.append(f"{heading!r} in {seen[heading.lower()]} and {page.name}")
            seen.setdefault(heading.lower(), page.name)
    # Then no heading appears twice (a topic said twice, as rotation once was)
    assert repeated == []


def test_the_readme_is_a_landing_page() -> None:
    # Given README.md / Then it fits on a few screens and points to every page of docs/
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    linked = {Path(target.partition("#")[0]).name for _, target in _links()}
    pages = {page.name for page in PAGES if page.parent.name == "docs"}
    assert pages <= linked, f"README.md and docs/ link nowhere to {sorted(pages - linked)}"
