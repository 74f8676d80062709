"""A corpus: a directory of documents (.pdf via pypdf, .md, .txt, .html) or a metadata CSV
(`id, title, url, path`; paths relative to the CSV). A document's id is its file stem unless the
CSV names one; that id is what answers cite (`ref_id`)."""

from __future__ import annotations

import csv
import hashlib
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from orchestrator.core.errors import UserError

SUFFIXES = (".pdf", ".md", ".txt", ".html", ".htm")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    url: str = ""
    path: str = ""


@dataclass(frozen=True)
class Source:
    id: str
    path: Path
    title: str = ""
    url: str = ""


def sources(corpus: str | Path) -> list[Source]:
    """The documents a corpus names, in a stable order (no file is read but the CSV)."""
    root = Path(corpus)
    if root.is_file() and root.suffix.lower() == ".csv":
        with open(root, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        out = []
        for i, row in enumerate(rows):
            if not row.get("path"):
                raise UserError(f"{root}: row {i + 2} has no `path` (columns: id, title, url, path)")
            p = Path(row["path"])
            p = p if p.is_absolute() else root.parent / p
            out.append(Source(row.get("id") or p.stem, p, row.get("title") or "", row.get("url") or ""))
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        out = [Source(p.stem, p) for p in files]
    else:
        raise UserError(f"corpus {root}: not a directory of documents nor a metadata CSV")
    ids = [s.id for s in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UserError(f"corpus {root}: document ids {', '.join(dup)} appear twice (rename, or give ids in a CSV)")
    if not out:
        raise UserError(f"corpus {root}: no documents ({', '.join(SUFFIXES)})")
    return out


def fingerprint(corpus: str | Path) -> str:
    """A content hash of the corpus (ids, metadata and every file's bytes): the index cache key."""
    h = hashlib.sha256()
    for s in sources(corpus):
        h.update(f"{s.id}\0{s.title}\0{s.url}\0".encode())
        try:
            h.update(hashlib.sha256(s.path.read_bytes()).digest())
        except OSError as e:
            raise UserError(f"corpus document {s.path}: cannot read ({e.strerror})") from None
    return h.hexdigest()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "tr", "section"):
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def read_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader

        return "\n\n".join((page.extract_text() or "") for page in PdfReader(str(path)).pages)
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix in (".html", ".htm"):
        parser = _Text()
        parser.feed(text)
        text = html.unescape("".join(parser.parts))
        text = re.sub(r"[ \t]+", " ", text)
    return text


def load(corpus: str | Path) -> list[Document]:
    return [Document(s.id, read_text(s.path), s.title, s.url, str(s.path)) for s in sources(corpus)]
