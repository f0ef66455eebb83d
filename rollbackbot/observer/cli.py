"""``rollbackbot observer serve | scan | baseline``: the observer's command line.

- ``serve --upstream URL --endpoint NAME [--host H] [--port P] [--admin-port A] [--config FILE]``:
  every option also as a ``ROLLBACKBOT_OBSERVER_*`` variable (options win).
- ``scan [FILE] [--config FILE]``: JSON lines in (stdin without FILE): ``{"input": "..."}``,
  ``{"output": "..."}`` or ``{"messages": [...]}``; one JSON line out per line in:
  ``{"flagged": bool, "hits": [...], "refusal": bool|null, "pii": [...], "canary": bool}``, or
  ``{"error": "..."}`` for a line that is not such an object. Same ruleset as the proxy.
- ``baseline [FILE] [--output FILE]``: a drift baseline (JSON) from a traffic sample in JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from rollbackbot.errors import ConfigError, RollbackBotError
from rollbackbot.observer.config import EndpointConfig, ObserverSettings, load_endpoint_config
from rollbackbot.observer.drift import build_baseline, read_sample
from rollbackbot.observer.rules import EndpointRules, scan_input, scan_output
from rollbackbot.observer.traffic import UnreadableExchange, request_inputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollbackbot observer", description="the model observer sidecar")
    sub = parser.add_subparsers(dest="observer_command", required=True)
    serve = sub.add_parser("serve", help="the proxy in front of a model endpoint")
    serve.add_argument("--upstream", help="model server base URL (ROLLBACKBOT_OBSERVER_UPSTREAM)")
    serve.add_argument("--endpoint", help="endpoint name = Argo CD app (ROLLBACKBOT_OBSERVER_ENDPOINT)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--admin-port", type=int)
    serve.add_argument("--config", type=Path, help="per-endpoint config file (YAML or JSON)")
    scan = sub.add_parser("scan", help="run the ruleset over JSON lines")
    scan.add_argument("file", nargs="?", type=Path)
    scan.add_argument("--config", type=Path)
    baseline = sub.add_parser("baseline", help="build a drift baseline from a traffic sample")
    baseline.add_argument("file", nargs="?", type=Path)
    baseline.add_argument("--output", type=Path, help="write here instead of stdout")
    return parser


def main(argv: list[str]) -> int:
    """Run one observer command; returns the exit code (2 for bad settings or config)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except RollbackBotError as exc:
        print(f"rollbackbot observer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `rollbackbot observer scan | head`
        sys.stderr.close()
        return 0


def _run(args: argparse.Namespace) -> int:
    if args.observer_command == "serve":
        from rollbackbot.observer.serve import serve

        return serve(_settings(args))
    if args.observer_command == "scan":
        config = load_endpoint_config(args.config)
        with _open(args.file) as lines:
            for result in scan_lines(lines, config):
                sys.stdout.write(json.dumps(result) + "\n")
        return 0
    with _open(args.file) as lines:
        text = json.dumps(build_baseline(read_sample(lines)), indent=2) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _settings(args: argparse.Namespace) -> ObserverSettings:
    given = {
        name: value
        for name in ("upstream", "endpoint", "host", "port", "admin_port", "config")
        if (value := getattr(args, name)) is not None
    }
    try:
        return ObserverSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"observer settings: {problems}") from exc


class _open:
    """stdin, or a file opened as UTF-8 text (undecodable bytes replaced)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    def __enter__(self) -> Iterable[str]:
        if self.path is None:
            return sys.stdin
        try:
            self.handle = self.path.open(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        return self.handle

    def __exit__(self, *_: object) -> None:
        if self.handle is not None:
            self.handle.close()


def scan_record(record: Any, rules: EndpointRules) -> dict[str, Any]:
    """The scan result of one parsed line."""
    if not isinstance(record, dict) or not ({"input", "output", "messages"} & record.keys()):
        return {"error": 'expected an object with "input", "output" or "messages"'}
    texts: list[str] = []
    if isinstance(record.get("input"), str):
        texts.append(record["input"])
    if "messages" in record:
        try:
            texts.extend(request_inputs({"messages": record["messages"]}, "chat"))
        except UnreadableExchange as exc:
            return {"error": str(exc)}
    hits = scan_input(texts, rules) if texts else []
    result: dict[str, Any] = {"flagged": bool(hits), "hits": hits, "refusal": None, "pii": [], "canary": False}
    if isinstance(record.get("output"), str):
        output = scan_output(record["output"], rules)
        result.update(
            flagged=bool(hits) or output.flagged, refusal=output.refusal, pii=output.pii_types, canary=output.canary
        )
    return result


def scan_lines(lines: Iterable[str], config: EndpointConfig) -> Iterator[dict[str, Any]]:
    """One result per non-blank line, in order."""
    rules = EndpointRules(refusal_phrases=config.refusal_phrases, canary=config.canary)
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            yield {"error": "not a JSON line"}
            continue
        yield scan_record(record, rules)
