"""The RE2 patterns of the ruleset (``rules.RULESET_VERSION``), grouped by detector.

RE2 syntax: no lookaround, no backreferences; every pattern is compiled at import, so a pattern RE2
rejects fails the first test. Injection patterns are matched case-insensitively on NFKC-normalised
text; tune them only on the corpora named in docs/observer.md.
"""

from __future__ import annotations

_ANY = (
    r"(?:all|any|every|the|your|my|these|those|of|and|previous|prior|above|preceding|earlier|initial|original"
    r"|system|following|other|existing|current|given)"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|directions?|guidelines|guidance|context|commands?|orders|programming"
    r"|restrictions|constraints|policies|messages?|text)"
)

INJECTION: dict[str, tuple[str, ...]] = {
    "instruction_override": (
        rf"\b(?:ignore|disregard|forget|skip|override|overrule|bypass|neglect|discard|abandon)\s+(?:{_ANY}\s+){{0,5}}{_RULES}\b",
        r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:(?:you\s+)?(?:were|was|have been)\s+)?"
        r"(?:told|said|above|before|previously|prior)",
        r"\bnew\s+(?:instructions|rules|task|directive)\s*(?:are|is)?\s*:",
        r"\b(?:stop\s+everything|nevermind|never\s+mind)\b[\s\S]{0,40}\b(?:print|say|output|write|instead)\b",
        r"\binstead\s*,?\s*(?:just\s+)?(?:print|say|output|respond\s+with|reply\s+with)\b",
        rf"\b(?:do\s+not|don't)\s+follow\s+(?:{_ANY}\s+){{0,4}}{_RULES}",
        r"\byour\s+(?:new|real|true)\s+(?:instructions|task|purpose|goal)\s+(?:is|are)\b",
    ),
    "role_marker": (
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id|begin_of_text)\|>",
        r"\[/?INST\]",
        r"<</?SYS>>",
        r"</?(?:start_of_turn|end_of_turn)>",
        r"(?m)^\s*#{2,4}\s*(?:system|instruction|assistant)\s*:?\s*$",
        r"(?m)^\s*(?:system|assistant)\s*:\s*\S",
    ),
    "jailbreak_persona": (
        r"\bDAN\b[\s\S]{0,120}\b(?:do\s+anything|stands\s+for|jailbr|mode)",
        r"\bdo\s+anything\s+now\b",
        r"\b(?:developer|god|dude|stan|evil|unrestricted|unfiltered|opposite|chaos|jailbreak|jailbroken|anarchy|devil|dark)\s+mode\b",
        r"\bjailbr(?:eak|oken)\b",
        r"\b(?:unfiltered|uncensored|unrestricted|amoral|unethical|unbound|unchained|limitless|immoral)\s+(?:ai|a\.i\.|assistant|chatbot|bot|model|version|character|persona|language\s+model|response)",
        r"\b(?:no|without\s+any|without|free\s+(?:of|from))\s+(?:ethical|moral|content)?\s*(?:restrictions|limitations|filters|filtering|censorship|guidelines|boundaries|morals|ethics)\b",
        r"\b(?:stay|remain|break|breaking)\s+(?:in|out\s+of)\s+character\b",
        r"\b(?:pretend|act|behave|roleplay|role-play)\s+(?:to\s+be\s+|as\s+|like\s+)(?:an?\s+)?(?:\w+\s+){0,3}(?:ai|assistant|chatbot|model)\s+(?:that|which|who|without|with\s+no)\b",
        r"\b(?:broken|broke|break)\s+free\s+(?:of|from)\b",
        r"\b(?:openai|anthropic|content)\s+(?:policy|policies|guidelines)\b[\s\S]{0,80}\b(?:ignore|no\s+longer|doesn't|does\s+not|don't|bypass)",
        r"\b(?:no\s+longer|not)\s+(?:bound|restricted|limited)\s+by\b",
        r"\bnever\s+refuse\b",
        r"\b(?:AIM|STAN|DUDE|BetterDAN|AntiGPT|BasedGPT|DevMode|UCAR|Mongo\s+Tom)\b",
        r"\b(?:hypothetical|fictional)\s+(?:ai|character|story)\b[\s\S]{0,100}\b(?:no\s+(?:rules|limits|restrictions|filters)|unfiltered|amoral)",
        r"\bchatgpt\s+with\s+\w+\s+mode\b",
        r"\b(?:from\s+now\s+on|starting\s+now)\b[\s\S]{0,60}\b(?:you\s+(?:are|will\s+be|will\s+act|must\s+act)|act\s+as|pretend)",
    ),
    "prompt_extraction": (
        r"\b(?:repeat|print|reveal|show|output|display|tell\s+me|give\s+me|write\s+out|spell\s+out|list|share|leak|dump|recite|copy)\s+(?:me\s+)?(?:back\s+)?(?:\w+\s+){0,3}(?:system\s+prompt|system\s+message|initial\s+(?:prompt|instructions)|hidden\s+(?:prompt|instructions)|original\s+(?:prompt|instructions)|pre-?prompt|your\s+(?:instructions|prompt|rules))",
        r"\b(?:repeat|print|output|copy)\s+(?:everything|all|the\s+(?:text|words|content))\s+(?:above|before|prior)",
        r"\bwhat\s+(?:is|are|was|were)\s+(?:your|the)\s+(?:system\s+prompt|initial\s+(?:prompt|instructions)|original\s+instructions|instructions)\b",
        r"\b(?:words|text|everything)\s+(?:above|before)\s+(?:this|the\s+first)\b[\s\S]{0,60}\b(?:repeat|verbatim|print|output)",
        r"\bverbatim\b[\s\S]{0,60}\b(?:system\s+prompt|instructions|above)",
        r"\bbeginning\s+with\s+['\"]?you\s+are\b",
    ),
    "fake_authority": (
        r"\b(?:this\s+is|message\s+from|i\s+am|i'm|we\s+are)\s+(?:your|the|an?)\s+(?:developer|developers|administrator|admin|sysadmin|system\s+administrator|creator|owner|openai|anthropic|security\s+team|operator)\b",
        r"\b(?:admin|administrator|developer|sudo|root|debug|maintenance|god)\s+(?:mode|access|override|privileges?)\s+(?:enabled|activated|granted|on)\b",
        r"\bauthori[sz]ed\s+(?:by|override|request)\b[\s\S]{0,60}\b(?:openai|anthropic|admin|developer|system)",
        r"\b(?:official|urgent|important)\s+(?:notice|message|update|instruction)\s+from\s+(?:openai|anthropic|the\s+(?:developers|administrators|system))",
        r"\[(?:system|admin|developer)\s+(?:note|override|message|instruction)\]",
    ),
}

# Bidi embeddings/overrides/isolates, Unicode tag characters, private-use planes and
# zero-width/invisible formatters (ZWJ U+200D is emoji glue: not counted).
INVISIBLE_CHARS = (
    r"[\x{200B}\x{200C}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}"
    r"\x{E0000}-\x{E007F}\x{E000}-\x{F8FF}\x{F0000}-\x{FFFFD}\x{100000}-\x{10FFFD}]"
)
ZERO_WIDTH_STRIP = (
    r"[\x{200B}\x{200C}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{FEFF}\x{E0000}-\x{E007F}]"
)
# C0 controls other than tab, newline, carriage return; DEL; C1 controls.
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\x{80}-\x{9F}]"
BASE64_RUN = r"[A-Za-z0-9+/_-]{24,}={0,2}"
HEX_RUN = r"\b(?:[0-9a-fA-F]{2}){16,}\b"

PII: dict[str, str] = {
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b",
    # Issuer prefixes (Visa, Mastercard, Amex, Discover, JCB, Diners) then Luhn in code.
    "card": r"\b(?:4|5[1-5]|2[2-7]|3[47]|6(?:011|5)|35|3[0689])\d(?:[ -]?\d){10,17}\b",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
}

SECRETS: tuple[str, ...] = (
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bASIA[0-9A-Z]{16}\b",
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",
    r"\bsk_live_[0-9A-Za-z]{16,}",
    r"\brk_live_[0-9A-Za-z]{16,}",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}",
    r"\bgithub_pat_[A-Za-z0-9_]{40,}",
    r"\bglpat-[A-Za-z0-9_-]{20,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----",
)

_CANT = (
    r"(?:can(?:not|'t|’t| not)|won(?:'t|’t)|will\s+not|am\s+(?:unable|not\s+able)|'m\s+(?:unable|not\s+able)"
    r"|must\s+(?:decline|refuse))"
)
_HELP = (
    r"(?:help|assist|provide|comply|fulfil{1,2}|do\s+that|do\s+this|create|generate|write|engage|support|share"
    r"|give|answer|participate|produce)"
)

REFUSAL_START: tuple[str, ...] = (
    r"^\s*(?:I'?m|I\s+am|I’m)\s+(?:really\s+|very\s+|so\s+|truly\s+)?sorry,?\s+but\b",
    rf"^\s*(?:I'?m|I\s+am|I’m)\s+(?:really\s+|very\s+|so\s+|truly\s+)?sorry,?\s+(?:I|we)\s+{_CANT}",
    rf"^\s*(?:sorry|unfortunately|apologies),?\s+(?:but\s+)?I\s+{_CANT}",
    rf"^\s*I\s+{_CANT}\s+(?:\w+\s+)?{_HELP}",
    r"^\s*I\s+apologi[sz]e,?\s+(?:but\s+)?I\b",
    r"^\s*As\s+an?\s+(?:AI|artificial\s+intelligence|language\s+model|responsible\s+AI)\b[^.]{0,80}\b(?:can(?:not|'t|’t)|unable|not\s+able|don't|do\s+not|won't)",
    r"^\s*(?:No,?\s+)?I\s+(?:must|have\s+to)\s+(?:respectfully\s+)?(?:decline|refuse)",
    r"^\s*I'?m\s+not\s+(?:able|allowed|permitted|comfortable)\s+to\b",
    r"^\s*(?:That|This)\s+(?:request\s+)?(?:is\s+not\s+something|isn't\s+something)\s+I\s+(?:can|will)",
)
REFUSAL_END: tuple[str, ...] = (
    rf"\bI\s+{_CANT}\s+(?:\w+\s+){{0,2}}{_HELP}\s+(?:you\s+)?with\s+(?:that|this|your|the|such)(?:\s+(?:request|requests|question|task|topic))?[\s.!]*$",
    rf"\bI\s+{_CANT}\s+(?:\w+\s+){{0,2}}{_HELP}\s+(?:that|this)(?:\s+request)?[\s.!]*$",
    r"\b(?:against|violates?)\s+(?:my|our)\s+(?:guidelines|policies|policy|principles|programming)[\s.!]*$",
)
