"""Every page of docs/ can be reached from the README, and every relative link resolves."""

from __future__ import annotations

import re

import pytest

from ..support import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _links(path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = [t for t in _links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert broken == []


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [REPO / "README.md"]
    while todo:
        page = todo.pop()
        for target in _links(page):
            path = (page.parent / target.split("#")[0]).resolve()
            if path.is_dir():
                path = path / "README.md" if (path / "README.md").exists() else path
            candidates = sorted(path.glob("*.md")) if path.is_dir() else [path]
            for found in candidates:
                if found.suffix == ".md" and found not in reached:
                    reached.add(found)
                    todo.append(found)
    unreachable = [str(p.relative_to(REPO)) for p in PAGES[1:] if p.resolve() not in reached]
    assert unreachable == []
