"""Fenced code blocks of a markdown file, as the reader sees them."""
from __future__ import annotations

import dataclasses
import re

# ```lang ... ``` at the start of a line; the language tag may be empty.
_FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclasses.dataclass(frozen=True)
class Block:
    path: str
    line: int       # 1-based line of the opening fence
    lang: str
    text: str

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")

    def where(self) -> str:
        return "%s:%d (```%s)" % (self.path, self.line, self.lang)


def blocks(path: str) -> list[Block]:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return [Block(path, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))
            for match in _FENCE.finditer(text)]
