"""Tool calling through the official openai client against `hearth serve` running SmolLM2 with
Qwen 2.5's chat template (Hermes-style `<tool_call>` calls).

SmolLM2-135M rarely calls a tool on its own, so the calls are forced with `tool_choice`
("required", or a named function): the server constrains the reply with a grammar, then
parses it back into `tool_calls`. Usage: python tools.py http://127.0.0.1:PORT
"""

import json
import sys

import openai

base = sys.argv[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
model = client.models.list().data[0].id

weather = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
clock = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
messages = [{"role": "user", "content": "What is the weather like in Paris?"}]
opts = dict(model=model, temperature=0, seed=7, max_tokens=64)

# --- required: a call, parsed -----------------------------------------------------------------
r = client.chat.completions.create(
    messages=messages, tools=[weather, clock], tool_choice="required", **opts
)
choice = r.choices[0]
check(choice.finish_reason == "tool_calls", f"finish_reason {choice.finish_reason!r}")
calls = choice.message.tool_calls
check(calls and len(calls) == 1, f"one call: {choice.message}")
call = calls[0]
check(call.type == "function", "type")
check(call.function.name in ("get_weather", "get_time"), f"name {call.function.name!r}")
args = json.loads(call.function.arguments)
check(isinstance(args, dict), f"arguments {call.function.arguments!r}")
check(len(call.id) == 32 and call.id.isalnum(), f"id {call.id!r}")
check(not choice.message.content, f"content {choice.message.content!r}")
check("<tool_call>" not in json.dumps(r.model_dump()), "markup leaked")

# --- the same, streamed: the deltas rebuild the same call ------------------------------------
stream = client.chat.completions.create(
    messages=messages, tools=[weather, clock], tool_choice="required", stream=True, **opts
)
name, arguments, ids, content, finish = "", "", set(), "", None
for chunk in stream:
    if not chunk.choices:
        continue
    c = chunk.choices[0]
    finish = c.finish_reason or finish
    if c.delta.content:
        content += c.delta.content
    for tc in c.delta.tool_calls or []:
        check(tc.index == 0, f"index {tc.index}")
        if tc.id:
            ids.add(tc.id)
        if tc.function and tc.function.name:
            check(not name, "the name comes once")
            name = tc.function.name
        if tc.function and tc.function.arguments:
            check(name, "the name comes before the arguments")
            arguments += tc.function.arguments
check(finish == "tool_calls", f"streamed finish_reason {finish!r}")
check(content == "", f"streamed content {content!r}")
check(len(ids) == 1, f"ids {ids}")
check(name == call.function.name, f"streamed name {name!r}")
check(arguments == call.function.arguments, f"streamed arguments {arguments!r}")

# --- a named function ---------------------------------------------------------------------------
r = client.chat.completions.create(
    messages=messages,
    tools=[weather, clock],
    tool_choice={"type": "function", "function": {"name": "get_time"}},
    **opts,
)
calls = r.choices[0].message.tool_calls
check(calls and calls[0].function.name == "get_time", f"named: {r.choices[0].message}")
check("zone" in json.loads(calls[0].function.arguments), "named arguments")

# --- the call and its result sent back (arguments as text, then as an object) --------------------
for arguments in (call.function.arguments, json.loads(call.function.arguments)):
    history = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    r = client.chat.completions.create(
        messages=history, tools=[weather, clock], tool_choice="none", **opts
    )
    m = r.choices[0].message
    check(r.choices[0].finish_reason in ("stop", "length"), "answer finish_reason")
    check(isinstance(m.content, str) and m.content, f"answer {m}")
    check(not m.tool_calls, "no call with tool_choice none")

print("ok")
