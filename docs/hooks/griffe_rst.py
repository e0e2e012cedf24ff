"""Griffe extension for the API reference: nnprune's docstrings are Google style with a few
reStructuredText habits (``:class:`X``` roles, ``Example::`` before a literal block). Rewritten
here before parsing, so the pages show ``X`` and an example heading instead of the raw markup."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|data|mod|attr|exc|obj|const):`~?([^`]+)`")
LITERAL_HEADING = re.compile(r"^([ \t]*)(Examples?)::[ \t]*$", re.MULTILINE)


def rewrite(text: str) -> str:
    """Roles become code spans; ``Example::`` becomes a bold heading (the indented block under it
    stays a code block)."""
    text = ROLE.sub(r"`\1`", text)
    return LITERAL_HEADING.sub(r"\1**\2**", text)


class RstToMarkdown(griffe.Extension):
    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
