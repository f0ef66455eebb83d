"""What one proxied exchange says: the copy the proxy queues, and its parsed, format-aware reading.

Formats: OpenAI-compatible ``POST /v1/chat/completions`` and ``/v1/completions`` (plain JSON or
streamed as SSE: content is rebuilt per choice from the deltas, ``finish_reason`` taken from the
last chunk that carries one) and plain JSON models described by JSON paths (``config.JsonModel``).
Every message's content counts as input, whatever its role (tool and function results are
untrusted text). Confidence comes from logprobs only when the client asked for them. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from rollbackbot.observer.config import JsonModel

OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions")
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})


@dataclass(frozen=True)
class Exchange:
    """The copy of one request and its response that the proxy hands to the scoring worker."""

    path: str
    status: int
    request_body: bytes
    response_body: bytes
    streamed: bool
    timestamp: float
    upstream_seconds: float
    truncated: bool = False


@dataclass
class Reading:
    """The parsed meaning of an exchange: input texts, the answer, decision and confidence."""

    kind: str  # "chat", "completion", "json"
    inputs: list[str] = field(default_factory=list)
    input_bytes: int = 0
    answer: str | None = None
    finish_reason: str | None = None
    decision: str | None = None
    confidence: float | None = None
    features: list[float] | None = None


class UnreadableExchange(ValueError):
    """The exchange is not in the format its route promises (counted as unscanned: parse_error)."""


def route_kind(path: str, json_models: tuple[JsonModel, ...]) -> str | None:
    """Which format a request path carries, or None for traffic that is proxied unscored."""
    bare = path.split("?", 1)[0]
    if bare == OPENAI_ROUTES[0]:
        return "chat"
    if bare == OPENAI_ROUTES[1]:
        return "completion"
    if any(model.route == bare for model in json_models):
        return "json"
    return None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableExchange(f"not JSON: {exc}") from exc


def _content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return []


def _message_texts(message: Any) -> list[str]:
    if not isinstance(message, dict):
        return []
    texts = _content_texts(message.get("content"))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            texts.extend(_content_texts(call["function"].get("arguments")))
    if isinstance(message.get("function_call"), dict):
        texts.extend(_content_texts(message["function_call"].get("arguments")))
    return texts


def request_inputs(request: Any, kind: str) -> list[str]:
    """Every input text of an OpenAI-style request (all messages, all roles; or the prompt)."""
    if not isinstance(request, dict):
        raise UnreadableExchange("request is not a JSON object")
    if kind == "chat":
        messages = request.get("messages")
        if not isinstance(messages, list):
            raise UnreadableExchange("chat request without messages")
        return [text for message in messages for text in _message_texts(message)]
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [item for item in prompt if isinstance(item, str)]
    raise UnreadableExchange("completion request without prompt")


def _wants_logprobs(request: dict[str, Any]) -> bool:
    return bool(request.get("logprobs"))


def _logprob_values(logprobs: Any) -> list[float]:
    if not isinstance(logprobs, dict):
        return []
    if isinstance(logprobs.get("content"), list):  # chat
        values = [item.get("logprob") for item in logprobs["content"] if isinstance(item, dict)]
    else:  # completions
        values = logprobs.get("token_logprobs") or []
    return [float(value) for value in values if isinstance(value, int | float)]


def confidence_from_logprobs(values: list[float]) -> float | None:
    """Geometric-mean token probability, in [0, 1]."""
    if not values:
        return None
    return min(1.0, max(0.0, math.exp(sum(values) / len(values))))


def _finish(reason: Any) -> str:
    if reason is None:
        return "none"
    return reason if isinstance(reason, str) and reason in FINISH_REASONS else "other"


def _field(container: Any, name: str) -> Any:
    return container.get(name) if isinstance(container, dict) else None


def _choice_text(choice: dict[str, Any], kind: str, streamed: bool) -> str:
    if kind == "completion":
        value = choice.get("text")
    else:
        value = _field(choice.get("delta" if streamed else "message"), "content")
    return value if isinstance(value, str) else ""


def sse_events(body: bytes) -> list[Any]:
    """The JSON ``data:`` events of an SSE stream, in order (``[DONE]`` and comments skipped)."""
    events: list[Any] = []
    for raw_event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip(b" ") for line in raw_event.split(b"\n") if line.startswith(b"data:"))
        if not data or data.strip() == b"[DONE]":
            continue
        try:
            events.append(json.loads(data))
        except (UnicodeDecodeError, ValueError):
            continue
    return events


def _read_openai(exchange: Exchange, kind: str) -> Reading:
    request = _json(exchange.request_body)
    inputs = request_inputs(request, kind)
    reading = Reading(kind=kind, inputs=inputs, input_bytes=sum(len(t.encode("utf-8", "replace")) for t in inputs))
    if exchange.status >= 300:
        return reading
    chunks = sse_events(exchange.response_body) if exchange.streamed else [_json(exchange.response_body)]
    texts: dict[int, list[str]] = {}
    logprobs: list[float] = []
    for chunk in chunks:
        choices = _field(chunk, "choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
            texts.setdefault(index, []).append(_choice_text(choice, kind, exchange.streamed))
            if choice.get("finish_reason") is not None or reading.finish_reason is None:
                reading.finish_reason = _finish(choice.get("finish_reason"))
            if index == 0:
                logprobs.extend(_logprob_values(choice.get("logprobs")))
    if not texts:
        raise UnreadableExchange("response without choices")
    reading.answer = "".join(texts[min(texts)])
    if _wants_logprobs(request):
        reading.confidence = confidence_from_logprobs(logprobs)
    return reading


def json_path(document: Any, path: str) -> Any:
    """The value at ``$.a.b[0].c`` in ``document``, or None where the path does not lead."""
    current = document
    for step in path.removeprefix("$").replace("[", ".").replace("]", "").split("."):
        if not step:
            continue
        if isinstance(current, list) and step.lstrip("-").isdigit():
            index = int(step)
            current = current[index] if -len(current) <= index < len(current) else None
        elif isinstance(current, dict):
            current = current.get(step)
        else:
            return None
    return current


def _read_json_model(exchange: Exchange, model: JsonModel) -> Reading:
    request = _json(exchange.request_body)
    reading = Reading(kind="json", input_bytes=len(exchange.request_body))
    if model.input:
        value = json_path(request, model.input)
        reading.inputs = (
            _content_texts(value) if not isinstance(value, list) else [v for v in value if isinstance(v, str)]
        )
    if model.features:
        values = json_path(request, model.features)
        if isinstance(values, list):
            reading.features = [float(v) for v in values if isinstance(v, int | float)]
    if exchange.status < 300:
        response = _json(exchange.response_body)
        if model.decision:
            decision = json_path(response, model.decision)
            reading.decision = None if decision is None else str(decision)[:64]
        if model.confidence:
            confidence = json_path(response, model.confidence)
            if isinstance(confidence, int | float) and 0 <= confidence <= 1:
                reading.confidence = float(confidence)
        reading.finish_reason = "decision"
    return reading


def read_exchange(exchange: Exchange, json_models: tuple[JsonModel, ...]) -> Reading:
    """Parse an exchange by its route; raises UnreadableExchange when the body is not what it should be."""
    kind = route_kind(exchange.path, json_models)
    if kind is None:
        raise UnreadableExchange("unsupported route")
    if kind == "json":
        bare = exchange.path.split("?", 1)[0]
        return _read_json_model(exchange, next(m for m in json_models if m.route == bare))
    return _read_openai(exchange, kind)
