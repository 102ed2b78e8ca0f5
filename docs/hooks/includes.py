"""Pages of the documentation site that are files kept elsewhere in the repository (a MkDocs hook).

A block

    <!-- include: README.md -->
    (anything: what a reader of the raw Markdown, e.g. on GitHub, sees instead)
    <!-- /include -->

is replaced at build time by the file, named from the repository root. Relative links and images in the included
file are rewritten to be relative to the including page; a link that leaves docs/ is left alone, so that
``mkdocs build --strict`` names it. Only the standard library.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path

BLOCK = re.compile(r"<!-- include: (?P<path>[^ ]+) -->.*?<!-- /include -->", re.S)
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s#]+)(?P<tail>[^)]*\))")


def links_rebase(text: str, *, included: str, page: str) -> str:
    """Rewrite relative link targets of ``included`` (a path from the repository root) for ``page`` (a path
    inside docs/, e.g. "index.md")."""
    def rebase(m: re.Match) -> str:
        target = m.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return m.group(0)  # a URL, mailto:, or an absolute path
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(included), target))
        if not resolved.startswith("docs/"):
            return m.group(0)
        rebased = posixpath.relpath(resolved[len("docs/"):], posixpath.dirname(page) or ".")
        return m.group("head") + rebased + m.group("tail")

    return LINK.sub(rebase, text)


def blocks_fill(markdown: str, *, root: Path, page: str) -> str:
    def include(m: re.Match) -> str:
        path = m.group("path")
        return links_rebase((root / path).read_text(encoding="utf-8"), included=path, page=page)

    return BLOCK.sub(include, markdown)


def on_page_markdown(markdown, page, config, files, **kwargs):
    if "<!-- include: " not in markdown:
        return markdown
    root = Path(config["config_file_path"]).parent
    return blocks_fill(markdown, root=root, page=page.file.src_uri)
