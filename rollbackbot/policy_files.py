"""Reading a directory of policy files, with every problem reported as ``file:line: message``.

The files are untrusted text (anyone can open a pull request against the GitOps repo), so
this module never lets an exception other than PolicyError escape: YAML is composed into a
node tree first (marks give the line of every key and value), the tree is checked for
alias bombs, excessive nesting and duplicate keys, and only then turned into Python data and
validated by the pure models in ``rollbackbot.core.policy``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rollbackbot.core.policy import Policy
from rollbackbot.errors import PolicyError

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 10_000  # per document, counted with aliases expanded: a real policy has < 100
MAX_DEPTH = 32  # a real policy nests 5 deep
MAX_MESSAGE_CHARS = 500
_SUFFIXES = (".yaml", ".yml")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # what PyYAML counts as a line


class PolicyErrors(PolicyError):
    """Every problem found in a policy directory; ``errors`` each carry ``file:line``."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def load_policies(directory: Path) -> list[Policy]:
    """All policies in ``directory`` in selection order; raises PolicyErrors listing every problem."""
    files = _policy_files(directory)
    policies: list[Policy] = []
    errors: list[PolicyError] = []
    first_seen: dict[str, str] = {}
    for path in files:
        found = _FileReader(path).read()
        errors.extend(found.errors)
        for policy, name_at in found.policies:
            if policy.name in first_seen:
                message = f"duplicate policy name {policy.name!r} (first defined at {first_seen[policy.name]})"
                errors.append(PolicyError(message, name_at))
            else:
                first_seen[policy.name] = name_at
                policies.append(policy)
    if errors:
        raise PolicyErrors(errors)
    return policies


def check_directory(directory: Path) -> list[str]:
    """Problems in a policy directory as ``file:line: message`` lines; empty when it is valid."""
    try:
        load_policies(directory)
    except PolicyErrors as exc:
        return [str(error) for error in exc.errors]
    return []


def policy_set_fingerprint(directory: Path) -> str:
    """A hash of the policy files' names and content as read through symlinks, or of why they cannot be read.

    It changes when Kubernetes swaps a mounted ConfigMap's ``..data`` symlink to a new directory,
    although no file in ``directory`` itself was touched.
    """
    digest = hashlib.sha256()
    try:
        files = _policy_files(directory)
    except PolicyErrors as exc:
        digest.update(f"unlistable\0{exc}".encode())
        return digest.hexdigest()
    for path in files:
        digest.update(f"{path.name}\0".encode())
        try:
            with path.open("rb") as stream:  # past the cap the loader refuses the file anyway
                digest.update(hashlib.sha256(stream.read(MAX_FILE_BYTES + 1)).digest())
        except OSError as exc:
            digest.update(f"unreadable\0{exc.strerror}".encode())
    return digest.hexdigest()


def _policy_files(directory: Path) -> list[Path]:
    try:
        if not directory.is_dir():
            problem = "is not a directory" if directory.exists() else "does not exist"
            raise PolicyErrors([PolicyError(f"policy directory {problem}", str(directory))])
        # Dotfiles are editor swap and lock files, not policies under review.
        return sorted(
            (p for p in directory.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
    except OSError as exc:
        raise PolicyErrors([PolicyError(f"cannot list policy directory: {exc.strerror}", str(directory))]) from None


class _TooDeep(yaml.MarkedYAMLError):
    """Nesting past MAX_DEPTH, stopped while scanning: PyYAML's scanner is quadratic in flow
    depth and its composer recurses per level, so waiting for the tree would be too late."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting limit and construction errors that carry the node's mark."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _TooDeep(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        added = super().add_indent(column)
        if added and len(self.indents) > MAX_DEPTH:
            raise _TooDeep(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=self.get_mark())
        return added

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # explicit tags such as !!int x or !!bool x raise anything
            problem = f"invalid {node.tag} value: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _timestamp_as_text(loader: _Loader, node: Node) -> str:
    # Timestamps are never valid policy values; as text they reach pydantic and get a located error.
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


@dataclass
class _FileResult:
    policies: list[tuple[Policy, str]] = field(default_factory=list)  # with metadata.name's location
    errors: list[PolicyError] = field(default_factory=list)


class _FileReader:
    """Reads one file; collects its policies and problems."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.result = _FileResult()

    def read(self) -> _FileResult:
        text = self._text()
        if text is not None:
            self._documents(text)
        return self.result

    def _error(self, line: int, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:  # messages quote values, which may be huge
            message = message[:MAX_MESSAGE_CHARS] + "…"
        self.result.errors.append(PolicyError(message, f"{self.path}:{line}"))

    def _text(self) -> str | None:
        try:
            with self.path.open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            self._error(1, f"cannot read file: {exc.strerror}")
            return None
        if len(data) > MAX_FILE_BYTES:
            self._error(1, f"file is larger than {MAX_FILE_BYTES} bytes")
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self._error(data.count(b"\n", 0, exc.start) + 1, "file is not valid UTF-8")
            return None

    def _documents(self, text: str) -> None:
        loader: _Loader | None = None
        index = 0
        try:
            loader = _Loader(text)  # checks every character up front
            while loader.check_node():
                self._document(loader, loader.get_node(), index)
                index += 1
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            detail = ", ".join(part for part in (exc.context, exc.problem) if part)
            if not isinstance(exc, _TooDeep):
                detail = f"YAML syntax error: {detail}"
            start = exc.context_mark
            if mark and start and start.line != mark.line:
                detail += f" (in what starts at line {start.line + 1})"
            self._error(mark.line + 1 if mark else 1, detail)
        except yaml.reader.ReaderError as exc:
            line = len(_LINE_BREAK.findall(text, 0, exc.position)) + 1
            self._error(line, f"YAML syntax error: unacceptable character {chr(exc.character)!r}")
        except yaml.YAMLError as exc:
            self._error(1, f"YAML error: {exc}")
        except RecursionError:
            # The composer recurses once per nesting level, before _tree_problem can look.
            line = loader.get_mark().line + 1 if loader else 1
            self._error(line, f"nested deeper than {MAX_DEPTH} levels")
        finally:
            if loader is not None:
                loader.dispose()

    def _document(self, loader: _Loader, node: Node | None, index: int) -> None:
        if node is None or (isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
            return  # an empty document between '---' separators
        problem = _tree_problem(node)
        if problem:
            self._error(problem[0], problem[1])
            return
        if not isinstance(node, MappingNode):
            self._error(node.start_mark.line + 1, "a policy document must be a mapping (apiVersion, kind, …)")
            return
        try:
            document = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or node.start_mark
            self._error(mark.line + 1, str(exc.problem))
            return
        except Exception as exc:  # a constructor failing outside construct_object: still the file's fault
            self._error(node.start_mark.line + 1, f"cannot read this document: {exc}")
            return
        try:
            policy = Policy.from_document(document, source=self.path.name, index=index)
        except ValidationError as exc:
            for line, message in _validation_problems(node, exc.errors()):
                self._error(line, message)
            return
        self.result.policies.append((policy, f"{self.path}:{_locate(node, ('metadata', 'name'), False)}"))


def _tree_problem(root: Node) -> tuple[int, str] | None:
    """An alias bomb, excessive nesting or a duplicate key, as (line, message)."""
    stack: list[tuple[Node, int]] = [(root, 0)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        line = node.start_mark.line + 1
        if visited > MAX_NODES:
            return line, f"document expands to more than {MAX_NODES} nodes (alias bomb?)"
        if depth > MAX_DEPTH:
            return line, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, MappingNode):
            seen: set[tuple[str, str]] = set()
            for key, value in node.value:
                # PyYAML keeps the last of duplicate keys silently; in a reviewed file that hides a change.
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if (key.tag, key.value) in seen:
                        return key.start_mark.line + 1, f"duplicate key {key.value!r}"
                    seen.add((key.tag, key.value))
                stack.extend(((key, depth + 1), (value, depth + 1)))
    return None


def _validation_problems(node: Node, errors: list[ErrorDetails]) -> list[tuple[int, str]]:
    header = [e for e in errors if e["loc"][:1] in (("apiVersion",), ("kind",))]
    # A foreign document (a Kubernetes manifest, say) would otherwise bury this under noise.
    chosen = header or errors
    # "at least 1 item" after an item failed says nothing new.
    chosen = [
        e
        for e in chosen
        if not (e["type"] == "too_short" and any(o["loc"][: len(e["loc"])] == e["loc"] and o is not e for o in chosen))
    ]
    located = [(_locate(node, e["loc"], e["type"] == "extra_forbidden"), _message(e)) for e in chosen]
    return sorted(located, key=lambda problem: problem[0])  # in file order, as a reviewer reads


def _locate(node: Node, loc: tuple[int | str, ...], at_key: bool) -> int:
    """1-based line of the key or value that ``loc`` names, or of the deepest key that exists."""
    line = node.start_mark.line
    for item in loc:
        if isinstance(node, MappingNode):
            # Last match wins, as in construction (merged keys come first after flattening).
            pair = next(
                (p for p in reversed(node.value) if isinstance(p[0], ScalarNode) and p[0].value == str(item)),
                None,
            )
            if pair is None:
                return line + 1
            line, node = pair[0].start_mark.line, pair[1]
        elif isinstance(node, SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
            node = node.value[item]
            line = node.start_mark.line
        else:
            return line + 1
    if isinstance(node, ScalarNode) and not at_key:
        line = node.start_mark.line
    return line + 1


def _message(error: ErrorDetails) -> str:
    loc = "".join(_loc_part(item) for item in error["loc"]).lstrip(".")
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "too_short":
        msg = f"needs at least {error.get('ctx', {}).get('min_length', 1)} item(s)"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif isinstance(error["input"], str | int | float | bool):
        shown = repr(error["input"])
        msg = f"{msg} (got {shown[:60]}{'…' if len(shown) > 60 else ''})"
    return f"{loc}: {msg}" if loc else msg


def _loc_part(item: object) -> str:
    if isinstance(item, int) and not isinstance(item, bool):
        return f"[{item}]"
    # Unknown keys come straight from the file: quote anything that is not a plain name.
    text = str(item)
    return f".{text}" if _PLAIN_KEY.fullmatch(text) else f"[{text!r}]"
