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
        r"(?-i:\bD\.?A\.?N\b)[\s\S]{0,160}\b(?:do\s+anything|stands\s+for|jailbr|mode|no\s+(?:rules|limits|restrictions))",
        r"(?-i:\b(?:DAN|STAN|DUDE|AIM|UCAR|BetterDAN|AntiGPT|BasedGPT|DevMode|NRAF|KEVIN|BISH|APOPHIS)\b)[\s\S]{0,300}"
        r"\b(?:ai|chatgpt|assistant|model|character|persona|stands\s+for|free)\b",
        r"\bdo\s+anything\s+now\b",
        r"\b(?:developer|god|dude|stan|evil|unrestricted|unfiltered|opposite|chaos|jailbreak|jailbroken|anarchy|devil|dark)"
        r"\s+mode\b",
        r"\bjailbr(?:eak|oken)\b",
        r"\b(?:uncensored|unfiltered|amoral)\b",
        r"\b(?:unrestricted|unethical|unbound|unchained|limitless|immoral)\s+(?:ai|a\.i\.|assistant|chatbot|bot|model|version"
        r"|character|persona|language\s+model|response)",
        r"\b(?:you|he|she|it|they|ai|bot|model|chatbot|assistant)\s+(?:have|has|with|are|is)\s+(?:absolutely\s+)?no\s+"
        r"(?:ethical|moral|content)?\s*(?:restrictions|limitations|filters|filtering|censorship|guidelines|boundaries|morals"
        r"|ethics|rules|limits)\b",
        r"\bfree\s+(?:from|of)\s+(?:all\s+|any\s+)?(?:the\s+)?(?:typical\s+)?(?:restrictions|rules|limitations|censorship"
        r"|filters|confines|constraints|guidelines)\b",
        r"\bwithout\s+(?:any\s+)?(?:ethical|moral)\s+(?:restrictions|limitations|guidelines|boundaries|considerations)\b",
        r"\b(?:stay|remain|break|breaking)\s+(?:in|out\s+of)\s+character\b",
        r"\b(?:pretend|act|behave|roleplay|role-play)\s+(?:to\s+be\s+|as\s+|like\s+)(?:an?\s+)?(?:\w+\s+){0,3}"
        r"(?:ai|assistant|chatbot|model)\s+(?:that|which|who|without|with\s+no)\b",
        r"\b(?:broken|broke|break)\s+free\s+(?:of|from)\b",
        r"\b(?:openai|chatgpt|content)(?:'s|’s)?\s+(?:content\s+)?(?:policy|policies|guidelines|filters?)\b",
        r"\b(?:no\s+longer|not|isn't|aren't)\s+(?:bound|restricted|limited|confined)\s+(?:by|to)\b",
        r"\bnever\s+refuse\b",
        r"\bnot\s+allowed\s+to\s+(?:say|refuse|mention|decline)\b",
        r"\b(?:opposite|reverse)\s+(?:of|from)\s+(?:openai|chatgpt|your\s+(?:programming|guidelines|rules))",
        r"\bwithout\s+(?:any\s+)?(?:warnings?|disclaimers?|censorship|filters?|filtering)\b",
        r"\b(?:hypothetical|fictional)\s+(?:ai|character|story|being)\b[\s\S]{0,100}\b(?:no\s+(?:rules|limits|restrictions"
        r"|filters)|unfiltered|amoral|hates?)",
        r"\bchatgpt\s+with\s+\w+\s+mode\b",
        r"\b(?:from\s+now\s+on|starting\s+now)\b[\s\S]{0,60}\b(?:you\s+(?:are|will\s+be|will\s+act|must\s+act)|act\s+as"
        r"|pretend)",
        r"\b(?:ethics|morals|morality|legality)\b[^.]{0,40}\b(?:don't|doesn't|do\s+not|does\s+not|no\s+longer)\s+"
        r"(?:apply|matter|exist)",
        r"\b(?:two|2)\s+(?:different\s+|separate\s+)?(?:responses|answers|paragraphs|ways)\b[\s\S]{0,160}"
        r"\b(?:normal|classic|jailbr|developer|unfiltered|opposite)",
        r"\bsimulate\s+(?:another|an?\s+(?:\w+\s+)?)?ai\b",
        r"\b(?:can|will|could)\s+(?:say|do|generate|write)\s+anything\b",
    ),
    "prompt_extraction": (
        r"\b(?:repeat|print|reveal|show|output|display|tell\s+me|give\s+me|write\s+out|spell\s+out|list|share|leak|dump"
        r"|recite|copy|encode|translate)\b[^.?!]{0,60}\b(?:system\s*(?:prompt|message|instructions?|configuration)"
        r"|initial\s+(?:prompt|instructions?|configuration)|hidden\s+(?:prompt|instructions)|original\s+(?:prompt|instructions)"
        r"|starting\s+instructions|pre-?prompt|initiali[sz]ation\s+string|your\s+(?:instructions|prompt|rules))",
        r"\b(?:repeat|print|output|copy)\s+(?:everything|all|the\s+(?:text|words|content))\s+(?:above|before|prior)",
        r"\brepeat\s+the\s+(?:above|previous|preceding)\s+(?:text|message|instructions)",
        r"\bwhat\s+(?:is|are|was|were)\s+(?:your|the)\s+(?:system\s+prompt|initial\s+(?:prompt|instructions)"
        r"|original\s+instructions|instructions)\b",
        r"\b(?:words|text|everything)\s+(?:above|before)\s+(?:this|the\s+first)\b[\s\S]{0,60}\b(?:repeat|verbatim|print"
        r"|output)",
        r"\bverbatim\b[\s\S]{0,60}\b(?:system\s+prompt|instructions|above)",
        r"\bbeginning\s+with\s+['\"]?you\s+are\b",
        r"\b(?:instructions|text|prompt)\s+you\s+were\s+given\b",
        r"\bwhat\s+were\s+you\s+told\b",
        r"\bwhat\s+are\s+you\s+not\s+(?:supposed|allowed|permitted)\s+to\s+(?:tell|say|reveal|share)",
        r"\b(?:my|your)\s+instructions\s+are\s*:",
        r"\bI\s+was\s+instructed\s+to\s*['\"]",
        r"\bthe\s+system\s+prompt\s+is\s*:",
        r"\bsystem_?prompt\s*[)>(]",
        r"<\s*system_?prompt\s*>",
        r"\b(?:see|read|view|know|get|access)\s+(?:the|your)\s+system\s+prompt\b",
        r"\b(?:opposite|reverse)\s+of\s+your\s+(?:system\s+)?instructions\b",
        r"\bdisplay\s+(?:the\s+|your\s+)?system\s+configuration\b",
    ),
    "fake_authority": (
        r"\b(?:this\s+is|message\s+from|i\s+am|i'm|we\s+are)\s+(?:your|the|an?)\s+(?:developer|developers|administrator|admin|sysadmin|system\s+administrator|creator|owner|openai|anthropic|security\s+team|operator)\b",
        r"\b(?:admin|administrator|developer|sudo|root|debug|maintenance|god)\s+(?:mode|override)\s+(?:is\s+)?"
        r"(?:enabled|activated|engaged|on)\b",
        r"\b(?:administrator|admin|developer|system)\s+override\s*:",
        r"\byou\s+are\s+now\s+in\s+(?:maintenance|debug|developer|admin|god)\s+mode\b",
        r"\bauthori[sz]ed\s+(?:by|override|request)\b[\s\S]{0,60}\b(?:openai|anthropic|admin|developer|system)",
        r"\b(?:official|urgent|important)\s+(?:notice|message|update|instruction)\s+from\s+(?:openai|anthropic|the\s+(?:developers|administrators|system))",
        r"\[(?:system|admin|developer)\s+(?:note|override|message|instruction)\]",
    ),
}

# Bidi embeddings/overrides/isolates, Unicode tag characters, private-use planes and
# zero-width/invisible formatters (ZWJ U+200D is emoji glue: not counted).
# Any bidi control or tag character counts; the weaker signs (zero-width spaces, invisible operators,
# private-use code points, which copy-pasted web text and math carry) only from three on.
_WEAK_INVISIBLE = (
    r"[\x{200B}\x{200C}\x{200E}\x{200F}\x{2060}-\x{2064}\x{E000}-\x{F8FF}\x{F0000}-\x{FFFFD}\x{100000}-\x{10FFFD}]"
)
INVISIBLE_CHARS = (
    r"[\x{202A}-\x{202E}\x{2066}-\x{2069}\x{E0000}-\x{E007F}]"
    rf"|{_WEAK_INVISIBLE}(?:[^\x{{200B}}-\x{{200F}}]{{0,200}}{_WEAK_INVISIBLE}){{2}}"
)
ZERO_WIDTH_STRIP = (
    r"[\x{200B}\x{200C}\x{200E}\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{FEFF}\x{E0000}-\x{E007F}]"
)
# C0 controls other than tab, newline, vertical tab, form feed, carriage return (pasted documents
# carry those); DEL. C1 controls are mostly mojibake, not attacks: not counted.
CONTROL_CHARS = r"[\x00-\x08\x0E-\x1F\x7F]"
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
