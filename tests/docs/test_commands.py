"""Every command, option and make target the README and docs/ mention exists.

A code span or code block line that starts with ``convdb`` names a command
(the longest run of words that resolves in the click tree) and may carry
options; each ``make TARGET`` must be a target of the Makefile.
"""

from __future__ import annotations

import re

import click
import pytest

from convdb.cli import cli

from ..support import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _code(text: str) -> list[str]:
    """Code spans and the lines of code blocks, stripped."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    text = re.sub(r"```[^\n]*\n.*?```", "", text, flags=re.S)
    lines = [line.strip() for b in blocks for line in b.splitlines()]
    return [s.strip() for s in re.findall(r"`([^`\n]+)`", text)] + lines


def _mentions(pattern: str) -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for snippet in _code(path.read_text(encoding="utf-8")):
            for match in re.finditer(pattern, snippet):
                found.append((path.name, match.group(0).strip()))
    return sorted(set(found))


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    path = []
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        path.append(word)
    return command, path


CONVDB = _mentions(r"^(?:\$ )?(?:[A-Z_]+=\S+ )*convdb(?: [^|;&#`]*)?")
MAKE = _mentions(r"(?<![\w-])make [a-z][a-z-]*")


def test_the_docs_mention_commands():
    assert len(CONVDB) > 20 and len(MAKE) > 5


@pytest.mark.parametrize(("doc", "mention"), CONVDB)
def test_documented_convdb_command_and_options_exist(doc, mention):
    words = mention.split("convdb", 1)[1].split()
    if not words or words[0].startswith(("-", "<", "[")) or words[0].isupper():
        return  # `convdb` alone, or a placeholder such as `convdb COMMAND`
    command, path = _resolve([w for w in words if not w.startswith("-")][:3])
    assert path, f"{doc}: `{mention}` names no convdb command"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    options |= {"-h", "--help"}
    for flag in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", " ".join(words)):
        flag = flag.split("=")[0]
        assert flag in options or flag in {"-v", "--verbose"}, (
            f"{doc}: `{mention}`: convdb {' '.join(path)} has no option {flag}"
        )


@pytest.mark.parametrize(("doc", "mention"), MAKE)
def test_documented_make_targets_exist(doc, mention):
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))
    target = mention.split()[1]
    assert target in targets, f"{doc}: `{mention}` is not a target of the Makefile"
