"""The versioned detection ruleset: prompt-injection signs in inputs, refusals and leaks in outputs.

Every pattern is compiled with RE2 (``google-re2``), whose matching time is linear in the input:
no pattern here can backtrack on hostile text. Inputs are NFKC-normalised and stripped of
zero-width characters before matching (the invisible characters themselves are a detector), scan
windows are bounded (head and tail of each text), and encoded payloads (base64, hex) are decoded
within fixed limits and re-scanned once.

Pure computation: no I/O, no clock. ``RULESET_VERSION`` is exported in ``model_observer_build_info``
so a rule change is not mistaken for a model regression; bump it whenever a pattern changes.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import re2

from rollbackbot.observer import patterns

RULESET_VERSION = "2026.12.1"

# Scan windows: the head and the tail of each text (instructions hide at either end of a long document).
SCAN_HEAD_CHARS = 24_576
SCAN_TAIL_CHARS = 8_192
# Encoded payloads: at most this many runs per text, each decoded from at most this many characters.
MAX_ENCODED_RUNS = 8
MAX_DECODE_CHARS = 8_192
MIN_PRINTABLE_RATIO = 0.85
# Output checks look at most this much of an answer; refusals only at its start and end.
OUTPUT_SCAN_CHARS = 65_536
REFUSAL_WINDOW_CHARS = 400

INPUT_DETECTORS = (
    "instruction_override",
    "role_marker",
    "jailbreak_persona",
    "prompt_extraction",
    "fake_authority",
    "invisible_unicode",
    "control_chars",
    "encoded_payload",
)
ABNORMAL_LENGTH = "abnormal_length"
PII_TYPES = ("email", "card", "iban", "ssn", "secret")


def _options(*, case_sensitive: bool = True) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = 64 << 20
    return options


def _pattern_set(named: Iterable[tuple[str, str]]) -> tuple[re2.Set, list[str]]:
    """One RE2 set matching every pattern in a single linear pass; returns it and index -> name."""
    matcher = re2.Set.SearchSet(_options(case_sensitive=False))
    names: list[str] = []
    for name, pattern in named:
        matcher.Add(pattern)
        names.append(name)
    matcher.Compile()
    return matcher, names


def _compile(pattern: str, *, case_sensitive: bool = True) -> re2._Regexp:
    return re2.compile(pattern, options=_options(case_sensitive=case_sensitive))


_TEXT_SET, _TEXT_NAMES = _pattern_set(
    (name, pattern) for name, group in patterns.INJECTION.items() for pattern in group
)
_INVISIBLE = _compile(patterns.INVISIBLE_CHARS)
_ZERO_WIDTH = _compile(patterns.ZERO_WIDTH_STRIP)
_CONTROL = _compile(patterns.CONTROL_CHARS)
_BASE64_RUN = _compile(patterns.BASE64_RUN)
_HEX_RUN = _compile(patterns.HEX_RUN)
_PII = {name: _compile(pattern) for name, pattern in patterns.PII.items()}
_SECRETS = _compile("|".join(f"(?:{pattern})" for pattern in patterns.SECRETS))
# One linear pass says which of the PII/secret patterns occur at all (most texts hold none).
_SENSITIVE_SET = re2.Set.SearchSet(_options())
for _pattern in (*patterns.PII.values(), _SECRETS.pattern):
    _SENSITIVE_SET.Add(_pattern)
_SENSITIVE_SET.Compile()
_SENSITIVE_NAMES = (*patterns.PII, "secret")
_REFUSAL_START = _compile("|".join(f"(?:{p})" for p in patterns.REFUSAL_START), case_sensitive=False)
_REFUSAL_END = _compile("|".join(f"(?:{p})" for p in patterns.REFUSAL_END), case_sensitive=False)


@dataclass(frozen=True)
class Finding:
    """One PII value or secret found in a text: its type and character offsets."""

    type: str
    start: int
    end: int


@dataclass(frozen=True)
class OutputScan:
    """What the output checks found in one answer."""

    refusal: bool
    findings: tuple[Finding, ...] = ()
    canary: bool = False

    @property
    def pii_types(self) -> list[str]:
        """The PII/secret types found, each once, in a stable order."""
        return sorted({finding.type for finding in self.findings})

    @property
    def flagged(self) -> bool:
        """True when the answer leaks something (PII, a secret or the canary)."""
        return bool(self.findings) or self.canary


@dataclass(frozen=True)
class EndpointRules:
    """Per-endpoint additions to the ruleset: extra refusal phrases, the canary, an input-size limit."""

    refusal_phrases: tuple[str, ...] = ()
    canary: str | None = None
    max_input_bytes: int | None = None
    _start: re2._Regexp | None = field(default=None, compare=False, repr=False)
    _end: re2._Regexp | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        phrases = [p.strip() for p in self.refusal_phrases if p.strip()]
        if phrases:
            alternation = "|".join(re2.escape(p.rstrip(".!")) for p in phrases)
            object.__setattr__(self, "_start", _compile(rf"^\s*(?:{alternation})", case_sensitive=False))
            object.__setattr__(self, "_end", _compile(rf"(?:{alternation})[\s.!]*$", case_sensitive=False))

    def extra_refusal(self, head: str, tail: str) -> bool:
        """True when the answer starts or ends with one of the endpoint's own deflection phrases."""
        if self._start is None or self._end is None:
            return False
        return self._start.search(head) is not None or self._end.search(tail) is not None


def normalise(text: str) -> str:
    """NFKC, with zero-width characters removed (ZWJ and variation selectors stay for emoji)."""
    if text.isascii():  # NFKC leaves ASCII alone and it holds no zero-width character
        return text
    return str(_ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text)))


def _windows(text: str) -> list[str]:
    if len(text) <= SCAN_HEAD_CHARS + SCAN_TAIL_CHARS:
        return [text]
    return [text[:SCAN_HEAD_CHARS], text[-SCAN_TAIL_CHARS:]]


def _text_hits(text: str) -> set[str]:
    matched = _TEXT_SET.Match(text)
    return {_TEXT_NAMES[index] for index in matched} if matched else set()


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    printable = sum(1 for char in text if char.isprintable() or char in "\n\r\t")
    return text if printable / len(text) >= MIN_PRINTABLE_RATIO else None


def _decoded_payloads(window: str) -> Iterable[str]:
    """Bounded decoding of base64 and hex runs in ``window`` into printable text."""
    runs = 0
    for regex, decode in ((_BASE64_RUN, _b64), (_HEX_RUN, _hex)):
        for match in regex.finditer(window):
            runs += 1
            if runs > MAX_ENCODED_RUNS:
                return
            text = _printable(decode(match.group(0)[:MAX_DECODE_CHARS]))
            if text is not None:
                yield text


def _b64(run: str) -> bytes:
    run = run.rstrip("=")
    run = run[: len(run) - len(run) % 4]
    try:
        return base64.b64decode(run + "==", validate=False)
    except (binascii.Error, ValueError):
        return b""


def _hex(run: str) -> bytes:
    try:
        return bytes.fromhex(run[: len(run) - len(run) % 2])
    except ValueError:
        return b""


def scan_input(texts: Sequence[str], rules: EndpointRules | None = None) -> list[str]:
    """Input detectors that fire on any of ``texts`` (every message of a request), sorted."""
    hits: set[str] = set()
    size = 0
    for raw in texts:
        size += len(raw.encode("utf-8", "surrogatepass"))
        for window in _windows(raw):
            if _INVISIBLE.search(window) is not None:
                hits.add("invisible_unicode")
            if _CONTROL.search(window) is not None:
                hits.add("control_chars")
            clean = normalise(window)
            hits |= _text_hits(clean)
            if any(_text_hits(normalise(decoded)) for decoded in _decoded_payloads(clean)):
                hits.add("encoded_payload")
    if rules is not None and rules.max_input_bytes is not None and size > rules.max_input_bytes:
        hits.add(ABNORMAL_LENGTH)
    return sorted(hits)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN without spaces."""
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _card_length_fits(digits: str) -> bool:
    """Lengths issuers use: Amex 15, Visa 13/16/19, Mastercard 16, Discover/JCB/Diners 14-19."""
    if digits[:2] in {"34", "37"}:
        return len(digits) == 15
    if digits[0] == "4":
        return len(digits) in {13, 16, 19}
    if digits[0] in "25":
        return len(digits) == 16
    return 14 <= len(digits) <= 19


def _card(value: str) -> bool:
    digits = "".join(char for char in value if char.isdigit())
    return _card_length_fits(digits) and len(set(digits)) > 1 and luhn_valid(digits)


def _iban_span(value: str) -> int:
    """Length of the longest valid IBAN at the start of ``value`` (its groups may run into words)."""
    groups = value.split(" ")
    for count in range(len(groups), 0, -1):
        candidate = " ".join(groups[:count])
        if iban_valid(candidate.replace(" ", "")):
            return len(candidate)
    return 0


def _ssn(value: str) -> bool:
    area, group, serial = value.split("-")
    return area not in {"000", "666"} and not area.startswith("9") and group != "00" and serial != "0000"


def find_sensitive(text: str) -> list[Finding]:
    """PII (email, Luhn-valid card, mod-97 IBAN, SSN) and secrets in ``text``, by offset."""
    text = text[:OUTPUT_SCAN_CHARS]
    present = _SENSITIVE_SET.Match(text)
    if not present:
        return []
    kinds = {_SENSITIVE_NAMES[index] for index in present}
    found: list[Finding] = []
    for match in _PII["email"].finditer(text) if "email" in kinds else ():
        found.append(Finding("email", *match.span()))
    for match in _PII["card"].finditer(text) if "card" in kinds else ():
        if _card(match.group(0)):
            found.append(Finding("card", *match.span()))
    for match in _PII["iban"].finditer(text) if "iban" in kinds else ():
        length = _iban_span(match.group(0))
        if length:
            found.append(Finding("iban", match.start(), match.start() + length))
    for match in _PII["ssn"].finditer(text) if "ssn" in kinds else ():
        if _ssn(match.group(0)):
            found.append(Finding("ssn", *match.span()))
    for match in _SECRETS.finditer(text) if "secret" in kinds else ():
        found.append(Finding("secret", *match.span()))
    return sorted(found, key=lambda finding: (finding.start, -finding.end))


def is_refusal(answer: str, rules: EndpointRules | None = None) -> bool:
    """True when the answer starts or ends like a refusal (or an endpoint's own deflection text)."""
    head = normalise(answer[:REFUSAL_WINDOW_CHARS])
    tail = normalise(answer[-REFUSAL_WINDOW_CHARS:])
    if _REFUSAL_START.search(head) is not None or _REFUSAL_END.search(tail) is not None:
        return True
    return rules is not None and rules.extra_refusal(head, tail)


def scan_output(answer: str, rules: EndpointRules | None = None) -> OutputScan:
    """Refusal, PII/secrets and canary checks of one answer."""
    canary = bool(rules and rules.canary and rules.canary in answer)
    return OutputScan(refusal=is_refusal(answer, rules), findings=tuple(find_sensitive(answer)), canary=canary)
