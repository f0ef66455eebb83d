"""The rollback commit's objects written in-process: loose objects (zlib + SHA-1), no git process.

Writing a tree and a commit through git costs a process start each (``fast-import`` one, the
index dance ten); between fetching the head and pushing, that time is the window in which another
writer can win the race. The trees along the changed paths are read with ONE ``cat-file --batch``,
rewritten here and written as loose objects in git's own format (``<type> <size>\\0<content>``,
zlib-deflated, named by the SHA-1 of the uncompressed bytes), which any git reads and ``git fsck``
checks. Only SHA-1 repositories: the caller falls back to ``fast-import`` for any other format.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from rollbackbot.adapters.git.plumbing import Plumbing, TreeEntry
from rollbackbot.errors import PermanentError

TREE_MODE = "40000"


def write_object(objects: Path, kind: str, content: bytes) -> str:
    """Store one loose object (if absent) and return its id."""
    raw = f"{kind} {len(content)}\0".encode() + content
    oid = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
    target = objects / oid[:2] / oid[2:]
    if target.exists():
        return oid
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix="tmp_obj_")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(zlib.compress(raw, 1))
        os.chmod(temporary, 0o444)
        os.replace(temporary, target)  # atomic: a reader sees the whole object or none
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return oid


def parse_tree(content: bytes) -> dict[str, TreeEntry]:
    """name -> (mode, id) of a raw tree object."""
    entries: dict[str, TreeEntry] = {}
    position = 0
    while position < len(content):
        space = content.index(b" ", position)
        nul = content.index(b"\0", space)
        mode, name = content[position:space].decode(), content[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = TreeEntry(mode, content[nul + 1 : nul + 21].hex())
        position = nul + 21
    return entries


def _sort_key(item: tuple[str, TreeEntry]) -> bytes:
    name, entry = item
    suffix = b"/" if entry.mode.lstrip("0") == TREE_MODE else b""  # git orders a tree as "name/"
    return name.encode("utf-8", "surrogateescape") + suffix


def render_tree(entries: Mapping[str, TreeEntry]) -> bytes:
    """The raw tree object for ``entries`` in git's order."""
    out = bytearray()
    for name, entry in sorted(entries.items(), key=_sort_key):
        out += f"{entry.mode.lstrip('0')} ".encode() + name.encode("utf-8", "surrogateescape") + b"\0"
        out += bytes.fromhex(entry.oid)
    return bytes(out)


def read_trees(plumbing: Plumbing, head: str, directories: list[str]) -> dict[str, dict[str, TreeEntry]]:
    """The entries of each directory at ``head`` ("" is the root), absent ones empty: one cat-file --batch."""
    specs = [f"{head}^{{tree}}" if d == "" else f"{head}:{d}" for d in directories]
    raw = plumbing.attempt("cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs).encode()).stdout
    trees: dict[str, dict[str, TreeEntry]] = {}
    position = 0
    for directory in directories:
        header_end = raw.index(b"\n", position)
        header = raw[position:header_end].split()
        if header[-1] == b"missing" or len(header) != 3:
            trees[directory] = {}
            position = header_end + 1
            continue
        size = int(header[2])
        content = raw[header_end + 1 : header_end + 1 + size]
        trees[directory] = parse_tree(content) if header[1] == b"tree" else {}
        position = header_end + 1 + size + 1
    return trees


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def rewritten_directories(paths: Iterable[str]) -> list[str]:
    """Every directory above ``paths`` ("" is the root), deepest first, the root last."""
    directories: set[str] = set()
    for path in paths:
        parent = _parent(path)
        while True:
            directories.add(parent)
            if parent == "":
                break
            parent = _parent(parent)
    return sorted(directories, key=lambda d: (-d.count("/") - (d != ""), d))


def write_rollback(
    plumbing: Plumbing,
    head: str,
    at_target: Mapping[str, TreeEntry | None],
    blobs: Mapping[str, bytes],
    *,
    message: bytes,
    identity: str,
    stamp: str,
    known_trees: Mapping[str, dict[str, TreeEntry]] | None = None,
) -> str:
    """The commit on ``head`` with each path as in ``at_target`` (None: deleted) and ``blobs``; its id.

    ``known_trees``: directories of ``head`` read before (by the plan); read again when any is missing.
    """
    objects = Path(plumbing.repo.git_dir) / "objects"
    changes: dict[str, TreeEntry | None] = dict(at_target)
    for path, content in blobs.items():
        changes[path] = TreeEntry("100644", write_object(objects, "blob", content))
    ordered = rewritten_directories(changes)
    if known_trees is not None and all(d in known_trees for d in ordered):
        trees = dict(known_trees)
    else:
        trees = read_trees(plumbing, head, ordered)
    written: dict[str, str | None] = {}
    for directory in ordered:
        entries = dict(trees[directory])
        prefix = f"{directory}/" if directory else ""
        for path, entry in changes.items():
            if _parent(path) == directory:
                name = path[len(prefix) :]
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = entry
        for child, oid in written.items():
            if child and _parent(child) == directory:
                name = child[len(prefix) :]
                if oid is None:
                    entries.pop(name, None)
                else:
                    entries[name] = TreeEntry(TREE_MODE, oid)
        written[directory] = write_object(objects, "tree", render_tree(entries)) if entries or not directory else None
    root = written[""]
    if root is None:
        raise PermanentError("the rollback commit would have no tree")
    header = f"tree {root}\nparent {head}\nauthor {identity} {stamp}\ncommitter {identity} {stamp}\n\n"
    return write_object(objects, "commit", header.encode() + message)
