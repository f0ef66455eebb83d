"""Whatever a client or a model sends, reading and scoring never raise (only UnreadableExchange)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rollbackbot.observer.config import EndpointConfig, JsonModel
from rollbackbot.observer.exporter import ObserverMetrics, ProxyCounters
from rollbackbot.observer.scoring import ForensicBuffer, Scorer
from rollbackbot.observer.traffic import Exchange, UnreadableExchange, read_exchange

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "tool", "system", 7]), "content": JSON | st.text(max_size=200)}
    ),
    max_size=4,
)
CHAT_REQUEST = st.fixed_dictionaries({"messages": MESSAGES}, optional={"logprobs": JSON, "stream": JSON})
CHOICE = st.fixed_dictionaries(
    {},
    optional={
        "index": JSON,
        "message": JSON,
        "delta": JSON,
        "text": JSON,
        "finish_reason": JSON,
        "logprobs": JSON,
    },
)
RESPONSE = st.fixed_dictionaries({"choices": st.lists(CHOICE | JSON, max_size=3)}) | JSON
MODEL = JsonModel(route="/predict", input="$.a[0].b", features="$.f", decision="$.d.x", confidence="$.c")


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _bodies(response: Any, streamed: bool) -> bytes:
    if not streamed:
        return _encode(response)
    return b"".join(b"data: " + _encode(part) + b"\n\n" for part in [response, response]) + b"data: [DONE]\n\n"


SCORER = Scorer(
    config=EndpointConfig(json_models=(MODEL,), canary="CANARY-00000000"),
    metrics=ObserverMetrics("fuzz", "v1", "test"),
    counters=ProxyCounters(),
    buffer=ForensicBuffer(5),
    redaction_key=b"k",
    text_limit=128,
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/predict"]),
    request=CHAT_REQUEST | JSON,
    response=RESPONSE,
    streamed=st.booleans(),
    status=st.sampled_from([200, 201, 404, 500]),
)
def test_any_json_is_read_or_refused_cleanly(
    path: str, request: Any, response: Any, streamed: bool, status: int
) -> None:
    exchange = Exchange(path, status, _encode(request), _bodies(response, streamed), streamed, 0.0, 0.0)
    try:
        read_exchange(exchange, (MODEL,))
    except UnreadableExchange:
        pass
    SCORER.score(exchange)  # counts parse errors itself; must never raise


@settings(max_examples=200, deadline=None)
@given(request=st.binary(max_size=300), response=st.binary(max_size=300), streamed=st.booleans())
def test_any_bytes_are_scored_without_raising(request: bytes, response: bytes, streamed: bool) -> None:
    SCORER.score(Exchange("/v1/chat/completions", 200, request, response, streamed, 0.0, 0.0))
