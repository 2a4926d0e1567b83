#!/usr/bin/env python3
"""Render chat templates the way transformers' apply_chat_template does (jinja2 in an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop controls, the `generation`
tag of its AssistantTracker, and its tojson / raise_exception / strftime_now helpers).

Used to check that this reproduces crates/text/tests/fixtures/templates/expected.json, and to
write the extra reference renderings in extra_expected.json (cases expected.json lacks).

    python3 scripts/template_reference.py check     # compare with expected.json
    python3 scripts/template_reference.py extra     # rewrite extra_expected.json
    python3 scripts/template_reference.py probes    # rewrite semantics.json
    python3 scripts/template_reference.py checkpoints  # rewrite checkpoints/expected.json
"""
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXTURES = Path(__file__).resolve().parent.parent / "crates/text/tests/fixtures/templates"
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


CHECKPOINTS = FIXTURES.parent / "checkpoints"


def checkpoints():
    """checkpoints/expected.json: the chat_template.jinja of each checkpoints/* folder,
    rendered with the special tokens of its tokenizer_config.json, for expected.json's
    conversations."""
    exp = json.loads((FIXTURES / "expected.json").read_text())
    out = {
        "renderer": f"jinja2 {jinja2.__version__}, configured as transformers' apply_chat_template "
                    "(scripts/template_reference.py checkpoints)",
        "strftime_now": NOW.isoformat(),
        "checkpoints": {},
    }
    env = make_env(False)
    for folder in sorted(p for p in CHECKPOINTS.iterdir() if p.is_dir()):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        tokens = {k: config.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        tpl = env.from_string((folder / "chat_template.jinja").read_text())
        rendered = {}
        for name, conv in exp["conversations"].items():
            try:
                rendered[name] = {"output": tpl.render(messages=conv["messages"],
                                                       add_generation_prompt=conv["add_generation_prompt"],
                                                       **tokens)}
            except Exception as e:  # noqa: BLE001
                rendered[name] = {"error": f"{type(e).__name__}: {e}"}
        out["checkpoints"][folder.name] = rendered
    (CHECKPOINTS / "expected.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {sum(len(v) for v in out['checkpoints'].values())} renderings")


# Small templates probing one jinja2 behaviour each (undefined values, printing, filters, Python
# methods), rendered with PROBE_CONTEXT; semantics.json records each output or error.
PROBE_CONTEXT = {
    "messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Yo"}],
    "add_generation_prompt": True,
    "bos_token": "<s>",
    "eos_token": "</s>",
}
PROBES = [
    # jinja2's default Undefined: printing, iterating, testing and `length` are fine; looking
    # further into it, calling it, doing arithmetic with it or dumping it fails.
    "{{ missing }}",
    "{{ missing.attr }}",
    "{{ missing['key'] }}",
    "{{ missing() }}",
    "{{ missing.get('x') }}",
    "{% for x in missing %}x{% endfor %}.",
    "{{ missing | length }}",
    "{{ missing | tojson }}",
    "{{ missing ~ 'a' }}",
    "{{ missing + 'a' }}",
    "{{ missing is defined }}|{{ missing is not defined }}|{{ missing is none }}",
    "{{ 1 if missing else 2 }}",
    "{{ messages[0].missing }}",
    "{{ messages[0]['missing'] }}",
    "{{ messages[0].missing.deeper }}",
    "{{ messages[0].missing is defined }}",
    "{{ messages[5] }}",
    "{{ messages[5].role }}",
    "{{ tools is defined }}",
    "{{ 'a' + 1 }}",
    "{{ 'a' ~ none ~ true ~ 1.5 ~ [1, 'b'] }}",
    "{{ missing | default('d') }}|{{ none | default('d') }}|{{ none | default('d', true) }}",
    "{{ messages[0].content.missing_method() }}",
    # How values print: Python's str() and repr().
    "{{ none }}|{{ true }}|{{ false }}|{{ 1.0 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ 0.1 + 0.2 }}|{{ 2 ** 70 }}",
    "{{ [1, 'a', none, true, 1.5, [2]] }}",
    "{{ {'a': 1, 'b': [none]} }}",
    "{{ (1, 2) }}|{{ (1,) }}|{{ {'a': 1}.items() | list }}",
    "{{ [\"a'b\", 'c\"d', 'e\\'f\"g', 'tab\tnew\nline'] }}",
    "{{ messages[0] }}",
    "{{ messages | first }}",
    "{{ none | string }}|{{ true | string }}|{{ [1] | string }}|{{ 3 | string + 'a' }}",
    "{{ [1, none, true, 'x'] | join(',') }}",
    "{{ 'ab' | list }}",
    # Filters.
    "{{ messages | map(attribute='role') | list }}",
    "{{ messages | map(attribute='role') | join(',') }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | tojson }}",
    "{{ messages | map(attribute='role') | tojson }}",
    "{{ messages | rejectattr('role', 'equalto', 'user') | first }}",
    "{{ [3, 1, 2] | sort }}|{{ [1, 2] | sum }}|{{ [1, 2] | max }}",
    "{{ {'b': 1, 'a': 2} | dictsort }}",
    "{{ {'b': 1, 'a': 2} | items | list }}",
    "{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}",
    "{{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}",
    "{{ 'Hello %s' | format('W') }}|{{ 'abc' | replace('b', 'x') }}",
    "{{ 3.7 | int }}|{{ '3' | int + 1 }}|{{ 'x' | int }}|{{ '2.5' | float }}",
    "{{ '<a href=\"x\">\\'&' | e }}|{{ 'x' | escape }}",
    "{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 'Hi' | upper }}",
    "{{ [1, 2, 3][1:] }}|{{ 'hello'[::-1] }}|{{ messages[-1].role }}",
    "{{ (messages + [{'role': 'x'}]) | tojson }}",
    "{{ messages | tojson }}",
    "{{ {'a': [1, {'b': none}], 'c': 'é'} | tojson(indent=2) }}",
    "{{ {'a': 'é😀'} | tojson(ensure_ascii=true) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}",
    "{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}",
    "{{ 1.5e20 | tojson }}|{{ 1e-7 | tojson }}|{{ 2.0 | tojson }}",
    # Python methods.
    "{{ ' a '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'abc'.upper() }}",
    "{{ messages[0].content.startswith('Hi') }}|{{ 'x.py'.endswith(('.py', '.rs')) }}",
    "{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'abc'.replace('b', '') }}|{{ '  x'.lstrip() }}",
    "{{ '{}-{}'.format(1, 'a') }}|{{ 'abc'.find('c') }}|{{ 'aXb'.lower() }}",
    "{{ messages[0].get('role') }}|{{ messages[0].get('nope', 'dflt') }}|{{ messages[0].keys() | list }}",
    "{{ messages[0].items() | list }}",
    "{{ '  a b  c '.rsplit(None, 1) }}|{{ 'a b c'.rsplit() }}|{{ 'a,b,c'.rsplit(',') }}",
    "{{ 'prefix-x'.removeprefix('prefix-') }}|{{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }}|{{ 'abc'.partition('x') }}",
    "{{ [1, 2].append(3) }}",
    "{{ {'a': 1}.update({'b': 2}) }}",
    "{{ 'a' in 'cat' }}|{{ 'role' in messages[0] }}|{{ 1 == 1.0 }}",
    # Statements.
    "{% for m in messages %}{{ loop.index }}{{ loop.first }}{% if loop.last %}!{% endif %}{% endfor %}",
    "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
    "{% macro f(x, y='d') %}[{{ x }}{{ y }}]{% endmacro %}{{ f(1) }}{{ f(2, y=3) }}",
    "{% set x %}cap{% endset %}{{ x + 'tured' }}",
    "{{ raise_exception('boom') }}",
    "{{ strftime_now('%A %d %B %Y') }}",
    "  {% if true %}\n    lstrip\n  {% endif %}\nend",
    "{{ range(100001) | length }}",
    # jinja2's Markup: `|safe` and `|e` make one, and `+` with a plain string escapes the plain
    # side; `~` makes a plain string again.
    "{{ 'a<'|safe + '<b>' }}|{{ '<x>' + 'y&'|safe }}|{{ 'a'|safe + 'b'|safe + '\"' }}",
    "{{ ('a'|safe ~ '<') + '<' }}|{{ ('a'|safe ~ 'b'|safe) + '<' }}|{{ '<'|e + '<' }}",
    "{{ 'x'|safe + 1 }}",
    "{{ 'f: '|safe + {'a': 'q\"'}|tojson }}",
    "{% set s = 'a'|safe %}{% set s = s + \"'\" %}{{ s + '&' }}",
    # Literals, operators and namespace assignments, which hearth rewrites into guarded calls
    # (its guard_rewrite module): the rewritten template must render the same text.
    "{% set x = (1), (2) %}{% set y = 1, (2) %}{% set z = ((1, 2)), 3 %}{{ x }}{{ y }}{{ z }}",
    "{{ (1,) }}{{ () }}{{ [1,] }}{{ {'a': 1,} }}{{ {'a': 1, 'b': [2, (3)], (1, 2): {}} }}",
    "{{ [1, 2] + [3] }}|{{ (1, 2) + (3,) }}|{{ [0] * 3 }}|{{ 2 * 'ab' }}|{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}",
    "{{ 1 ~ 2 ~ none ~ [1] ~ {'a': true} }}|{{ 'x' ~ 1.0 }}|{{ ('a' ~ 'b') | upper }}",
    "{{ 'a' + 'b' | upper + 'c' }}|{{ -1 + 2 }}|{{ [1, 2] | map('string') | join('+') }}",
    "{% set ns = namespace(a=1) %}{% set ns.a = 2 -%}\n   x  {% set ns.b = 3 %}\ny{{ ns.a }}{{ ns.b }}",
    "{% set ns = namespace(a=[]) %}{% for m in messages %}{% set ns.a = ns.a + [m.role] +%}\n{% endfor %}{{ ns.a }}",
    "{% set ns = namespace() %}{% set ns.a, ns.b = 1, [2] %}{{ ns.a }}{{ ns.b }}",
    "{% set ns = namespace(a=0) %}{% set ns.a = (1 + 2) -%}\n  x{% set ns.b %}blo{{ 'ck' }}{% endset +%}\ny{% set ns.c | upper %}up{% endset %}{{ ns.a }}{{ ns.b }}{{ ns.c }}",
    "{% set ns = namespace({'a': 1}) %}{% set other = namespace(n=ns) %}{{ ns.a }}{{ other.n.a }}{{ ns is mapping }}{{ ns.missing is defined }}",
    "{% set x = 1 %}{% set x.y = 2 %}",
    "{% set ns = namespace(b=1) %}{% set ns.a = [2] %}{{ ns }}|{{ ns['a'] }}|{{ ns.b }}|{{ 'yes' if ns else 'no' }}",
    "{% set ns = namespace() %}{% for x in ns %}{% endfor %}",
    "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}|{% with p = {'k': [1]} %}{{ p.k + [2] }}{% endwith %}",
    "{{ '%5s|%-3d|%.2f|%%'|format('a', 2, 3.14159) }}|{{ '{}-{:>5}-{:.3f}'.format(1, 'b', 2.5) }}|{{ 'call 123456789012 {}'.format(1) }}",
    "{% macro m(x=[1] + [2]) %}{{ x }}{% endmacro %}{{ m() }}{% filter upper %}a{{ 'b' ~ 'c' }}{% endfilter %}",
]


def probes():
    env = make_env(True)
    out = []
    for src in PROBES:
        try:
            res = {"output": env.from_string(src).render(**PROBE_CONTEXT)}
        except Exception as e:  # noqa: BLE001
            res = {"error": f"{type(e).__name__}: {e}"}
        out.append({"template": src, **res})
    doc = {
        "renderer": f"jinja2 {jinja2.__version__}, configured as transformers' apply_chat_template "
                    "(scripts/template_reference.py probes)",
        "context": PROBE_CONTEXT,
        "strftime_now": NOW.isoformat(),
        "probes": out,
    }
    (FIXTURES / "semantics.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} probes")


if __name__ == "__main__":
    {"check": check, "extra": extra, "probes": probes, "checkpoints": checkpoints}[sys.argv[1]]()
