#!/usr/bin/env python3
"""Render chat templates the way transformers' apply_chat_template does (jinja2 in an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop controls, the `generation`
tag of its AssistantTracker, and its tojson / raise_exception / strftime_now helpers).

Used to check that this reproduces crates/engine/tests/fixtures/templates/expected.json, and to
write the extra reference renderings in extra_expected.json (cases expected.json lacks).

    python3 scripts/template_reference.py check     # compare with expected.json
    python3 scripts/template_reference.py extra     # rewrite extra_expected.json
"""
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXTURES = Path(__file__).resolve().parent.parent / "crates/engine/tests/fixtures/templates"
NOW = datetime(2026, 7, 26, 12, 0, 0)
CONTEXT = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


class AssistantTracker(Extension):
    """transformers' `{% generation %}` tag: renders its body unchanged (the tracking of
    assistant spans that transformers adds is not part of the rendered text)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(generation_tag):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    exts = [jinja2.ext.loopcontrols] + ([AssistantTracker] if generation_tag else [])
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=exts)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render_all(source, conversations, generation_tag):
    env = make_env(generation_tag)
    try:
        tpl = env.from_string(source)
    except Exception as e:  # noqa: BLE001 - the reference records any failure
        return {"compile_error": f"{type(e).__name__}: {e}"}
    out = {}
    for name, conv in conversations.items():
        kwargs = dict(CONTEXT)
        kwargs["messages"] = conv["messages"]
        if "tools" in conv:
            kwargs["tools"] = conv["tools"]
        kwargs["add_generation_prompt"] = conv["add_generation_prompt"]
        try:
            out[name] = {"output": tpl.render(**kwargs)}
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out


def check():
    exp = json.loads((FIXTURES / "expected.json").read_text())
    bad = 0
    total = 0
    for name, want in exp["templates"].items():
        got = render_all((FIXTURES / name).read_text(), exp["conversations"], False)
        for conv in set(want) | set(got):
            total += 1
            w, g = want.get(conv), got.get(conv)
            same = w == g or (isinstance(w, dict) and "error" in w and isinstance(g, dict) and "error" in g)
            if not same:
                bad += 1
                print(f"DIFF {name} {conv}: want {str(w)[:200]!r} got {str(g)[:200]!r}")
    print(f"{total - bad}/{total} match")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}

# Conversations expected.json lacks: a full tool-call round trip (arguments as a mapping, the
# form transformers documents; hearth passes them as JSON text and must parse them first), an
# assistant turn with reasoning, and text that JSON and repr() must escape.
EXTRA_CONVERSATIONS = {
    "tool-call-roundtrip": {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call00001", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
            {"role": "tool", "tool_call_id": "call00001", "name": "get_weather",
             "content": "{\"temperature\": 22, \"sky\": \"clear\"}"},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": True,
    },
    "reasoning": {
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "Two plus two is four."},
            {"role": "user", "content": "And 3+3?"},
        ],
        "add_generation_prompt": True,
    },
    "unicode-tools": {
        "messages": [
            {"role": "system", "content": "Réponds en français, s'il te plaît."},
            {"role": "user", "content": "Größe von \"Zürich\" — 東京? 😀\n\ttab\\slash"},
        ],
        "tools": [{
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up a city's \"facts\" — café, naïve, 東京 😀",
                "parameters": {"type": "object",
                               "properties": {"q": {"type": "string", "description": "l'endroit"},
                                              "limit": {"type": "integer", "default": 3},
                                              "ratio": {"type": "number", "default": 0.5},
                                              "strict": {"type": "boolean", "default": False}},
                               "required": ["q"]},
            },
        }],
        "add_generation_prompt": True,
    },
}


def extra():
    """extra_expected.json: every template with transformers' `generation` tag registered (so the
    templates that use it render), for expected.json's conversations and EXTRA_CONVERSATIONS."""
    exp = json.loads((FIXTURES / "expected.json").read_text())
    conversations = dict(exp["conversations"])
    conversations.update(EXTRA_CONVERSATIONS)
    out = {
        "renderer": f"jinja2 {jinja2.__version__}, configured as transformers' apply_chat_template, "
                    "with its AssistantTracker `generation` tag (scripts/template_reference.py)",
        "context": CONTEXT,
        "strftime_now": NOW.isoformat(),
        "conversations": conversations,
        "templates": {},
    }
    for path in sorted(FIXTURES.glob("*.jinja")):
        out["templates"][path.name] = render_all(path.read_text(), conversations, True)
    (FIXTURES / "extra_expected.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    n = sum(len(v) for v in out["templates"].values())
    errors = sum(1 for v in out["templates"].values() for r in v.values() if "error" in r)
    print(f"wrote {n} renderings ({errors} errors)")


if __name__ == "__main__":
    {"check": check, "extra": extra}[sys.argv[1]]()
