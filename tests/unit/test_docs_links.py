"""Every relative link of README.md and docs/*.md reaches a file, and its #anchor a heading.

Anchors are computed as GitHub renders them: the heading's text without Markdown (links
keep their text, code spans their content), lower-cased, every character other than a
letter, a digit, `_`, `-` or a space dropped, spaces turned into `-`, and `-1`, `-2`...
appended to repeats. An explicit `<a id="...">` (or `name=`) counts as an anchor too.
Links to other sites (`https://...`) are not followed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's Markdown text (before de-duplication)."""
    text = _LINK.sub(lambda m: m.group(1), heading)
    text = _CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags render as nothing
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    seen: Counter[str] = Counter()
    for _, line in _prose_lines(text):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
        found.update(_HTML_ANCHOR.findall(line))
    return found


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        where = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{where}:{self.line}: ({self.target})"


def links(page: Path) -> list[Link]:
    found = []
    for number, line in _prose_lines(page.read_text()):
        prose = _CODE_SPAN.sub("", line)
        found += [Link(page, number, m.group(2)) for m in _LINK.finditer(prose)]
    return found


def broken(link: Link) -> str | None:
    """Why `link` does not resolve, or None."""
    target = link.target
    if not target or _SCHEME.match(target) or target.startswith("//"):
        return None if target else "empty link"
    path_part, _, anchor = target.partition("#")
    path = (link.page.parent / path_part).resolve() if path_part else link.page
    if not path.exists():
        return f"no file {path_part}"
    if anchor:
        if path.is_dir() or path.suffix.lower() != ".md":
            return f"#{anchor} into a file that is not Markdown"
        if anchor not in anchors(path.read_text()):
            return f"no heading #{anchor} in {path.name}"
    return None


def test_the_pages_exist() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "architecture.md", "taskqueue-spec.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    problems = [f"{link}: {why}" for link in links(page) if (why := broken(link))]
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_docs_page() -> None:
    readme = {link.target.partition("#")[0] for link in links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md links none of: {missing}"


# ------------------------------------------------------------- the checker itself


def test_slugs_follow_github() -> None:
    assert slug("Operations: what the columns and conditions mean") == (
        "operations-what-the-columns-and-conditions-mean"
    )
    assert slug("Redis: `spec.redis`") == "redis-specredis"
    assert slug("Conditions (kstatus)") == "conditions-kstatus"
    assert slug("One tick: observe -> plan -> execute") == "one-tick-observe---plan---execute"
    assert slug("See [the spec](taskqueue-spec.md) & more") == "see-the-spec--more"
    assert slug("scale_down_delay") == "scale_down_delay"


def test_repeated_headings_and_html_anchors() -> None:
    text = '# A\n## Same\n## Same\n```\n# Not a heading\n```\n<a id="old-name"></a>\n'
    assert anchors(text) == {"a", "same", "same-1", "old-name"}


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Part two\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok](other.md#part-two) [ok](#page) [ok](https://example.com/x)\n"
        "`[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
        "[no file](missing.md)\n"
        "[no heading](other.md#part-three)\n"
        "[no local heading](#nowhere)\n"
    )
    found = {link.target: broken(link) for link in links(page)}
    assert found == {
        "other.md": None,
        "other.md#part-two": None,
        "#page": None,
        "https://example.com/x": None,
        "missing.md": "no file missing.md",
        "other.md#part-three": "no heading #part-three in other.md",
        "#nowhere": "no heading #nowhere in page.md",
    }
