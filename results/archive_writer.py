"""Writing a study archive's files into its zip: each file hashed as it is written (the manifest), CSV tables row by
row with bounded memory, cells written as csv.writer writes the answers export."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable

import numpy as np


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"  # as csv.writer writes a bool (the answers table)
    if isinstance(value, float):
        return "" if value != value else repr(value)
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


class ArchiveEntry:
    """A file inside the zip, hashed as it is written."""

    def __init__(self, archive: zipfile.ZipFile, name: str, manifest: dict):
        self.name, self.manifest = name, manifest
        self.stream = archive.open(name, "w", force_zip64=True)
        self.sha, self.size = hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.stream.write(data)

    def close(self) -> None:
        self.stream.close()
        self.manifest[self.name] = {"sha256": self.sha.hexdigest(), "bytes": self.size}


class ArchiveWriter:
    """Files into an open zip, each hashed as it is written (``manifest``: name -> SHA-256 and size)."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive, self.manifest = archive, {}

    def entry(self, name: str) -> ArchiveEntry:
        """A file to write piece by piece; its close() records it in the manifest."""
        return ArchiveEntry(self.archive, name, self.manifest)

    def text(self, name: str, text: str) -> None:
        entry = self.entry(name)
        entry.write(text.encode("utf-8"))
        entry.close()

    def json(self, name: str, value) -> None:
        self.text(name, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")

    def copy(self, name: str, source) -> None:
        entry = self.entry(name)
        for chunk in iter(lambda: source.read(1 << 20), b""):
            entry.write(chunk)
        entry.close()

    def blocks(self, name: str, blocks: Iterable[str]) -> None:
        entry = self.entry(name)
        for block in blocks:
            entry.write(block.encode("utf-8"))
        entry.close()

    def csv(self, name: str, header: list[str], rows: Iterable[Iterable]) -> int:
        """Rows written as they come (a 64 KiB buffer at most): memory stays bounded whatever the survey's size."""
        entry, buffer, n = self.entry(name), io.StringIO(), 0
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            n += 1
            if buffer.tell() > 1 << 16:
                entry.write(buffer.getvalue().encode("utf-8"))
                buffer.seek(0)
                buffer.truncate()
        entry.write(buffer.getvalue().encode("utf-8"))
        entry.close()
        return n
