"""The official openai and ollama Python clients against a running `hearth serve`.

Usage: python clients.py http://127.0.0.1:PORT — exits non-zero on the first failed check.
"""

import json
import sys

import ollama
import openai

base = sys.argv[1]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# --- openai ---------------------------------------------------------------------------------
client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
models = client.models.list()
model = models.data[0].id
check(model.endswith(".gguf"), f"model id {model!r}")

messages = [{"role": "user", "content": "Name three colours."}]
r = client.chat.completions.create(
    model=model, messages=messages, temperature=0.7, seed=42, max_tokens=16
)
text = r.choices[0].message.content
check(r.choices[0].message.role == "assistant", "role")
check(r.choices[0].finish_reason in ("stop", "length"), "finish_reason")
check(r.usage.completion_tokens > 0, "usage")
check(text, "non-empty text")

# Streamed text equals the non-streamed text for the same seed.
parts, usage, finish = [], None, None
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    temperature=0.7,
    seed=42,
    max_tokens=16,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("".join(parts) == text, f"stream {''.join(parts)!r} != {text!r}")
check(finish == r.choices[0].finish_reason, "stream finish_reason")
check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, "stream usage")

# n = 2
r2 = client.chat.completions.create(
    model=model, messages=messages, temperature=1.0, seed=3, max_tokens=8, n=2
)
check(len(r2.choices) == 2, "n=2 gives two choices")
check([c.index for c in r2.choices] == [0, 1], "choice indices")

# Completions, plain and streamed.
c1 = client.completions.create(
    model=model, prompt="The capital of France is", max_tokens=6, temperature=0
)
check("Paris" in c1.choices[0].text, f"completion {c1.choices[0].text!r}")
streamed = "".join(
    ch.choices[0].text
    for ch in client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=6, temperature=0, stream=True
    )
    if ch.choices
)
check(streamed == c1.choices[0].text, "streamed completion")

# Token log-probabilities, plain and streamed: the tokens spell the text.
lp = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=5, logprobs=True, top_logprobs=3
)
content = lp.choices[0].logprobs.content
check("".join(t.token for t in content) == lp.choices[0].message.content, "logprobs tokens")
check(all(t.logprob <= 0 and t.bytes and len(t.top_logprobs) == 3 for t in content), "logprobs")
check(content[0].top_logprobs[0].logprob >= content[0].top_logprobs[1].logprob, "top order")
toks = []
for ch in client.chat.completions.create(
    model=model,
    messages=messages,
    temperature=0,
    max_tokens=5,
    logprobs=True,
    top_logprobs=3,
    stream=True,
):
    if ch.choices and ch.choices[0].logprobs:
        toks += [t.token for t in ch.choices[0].logprobs.content]
check("".join(toks) == lp.choices[0].message.content, "streamed logprobs tokens")

# Structured output: response_format with a JSON schema, plain and through the client's
# pydantic-free `parse` path (a dict schema); the content validates.
schema = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "population": {"type": "integer", "minimum": 0},
        "continent": {"enum": ["Europe", "Asia", "Africa", "America", "Oceania"]},
    },
    "required": ["city", "population", "continent"],
    "additionalProperties": False,
}
rf = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}
js = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Describe Paris."}],
    temperature=0,
    max_tokens=120,
    response_format=rf,
)
obj = json.loads(js.choices[0].message.content)
check(list(obj) == ["city", "population", "continent"], f"schema keys {obj}")
check(isinstance(obj["city"], str) and len(obj["city"]) <= 20, f"city {obj}")
check(isinstance(obj["population"], int) and obj["population"] >= 0, f"population {obj}")
check(obj["continent"] in schema["properties"]["continent"]["enum"], f"continent {obj}")
jo = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "A JSON object with a name."}],
    temperature=0,
    max_tokens=60,
    response_format={"type": "json_object"},
)
check(jo.choices[0].message.content.startswith("{"), f"json_object {jo.choices[0].message.content!r}")
try:
    client.chat.completions.create(
        model=model,
        messages=messages,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "hiccup"}}},
    )
    check(False, "a bad schema should be refused")
except openai.BadRequestError as e:
    check("JSON schema" in str(e), str(e))

# A malformed tool choice is a 400 the client raises (tool calls themselves: tools.py).
try:
    client.chat.completions.create(
        model=model,
        messages=messages,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice="sometimes",
    )
    check(False, "a bad tool_choice should be refused")
except openai.BadRequestError as e:
    check("tool_choice" in str(e), str(e))

# --- ollama ---------------------------------------------------------------------------------
oc = ollama.Client(host=base)
listed = oc.list()
name = listed.models[0].model
check(name.endswith(".gguf"), f"ollama model {name!r}")
shown = oc.show(name)
check("im_start" in shown.template, "show template")
check(shown.details.family == "llama", "show details")

opts = {"temperature": 0, "num_predict": 8}
chat_msgs = [{"role": "user", "content": "What is the capital of France?"}]
resp = oc.chat(model=name, messages=chat_msgs, options=opts)
check(resp.done and resp.done_reason == "length", f"chat done {resp.done_reason}")
check(resp.eval_count == 8, "eval_count")
whole = resp.message.content
pieces = [p.message.content for p in oc.chat(model=name, messages=chat_msgs, options=opts, stream=True)]
check("".join(pieces) == whole, f"ollama stream {''.join(pieces)!r} != {whole!r}")

gen = oc.generate(model=name, prompt="What is the capital of France?", options=opts)
check(gen.response == whole, f"generate {gen.response!r} != chat {whole!r}")
gen_pieces = [p.response for p in oc.generate(model=name, prompt="Hi", options=opts, stream=True)]
check(len(gen_pieces) > 1, "generate streams")

# Ollama's format: a JSON schema.
fmt = oc.chat(
    model=name,
    messages=[{"role": "user", "content": "Describe Paris."}],
    format=schema,
    options={"temperature": 0, "num_predict": 120},
)
check(json.loads(fmt.message.content)["city"], f"ollama format {fmt.message.content!r}")

try:
    oc.pull("llama3")
    check(False, "pull should fail")
except ollama.ResponseError as e:
    check(e.status_code == 501, f"pull status {e.status_code}")

print("python clients: all checks passed")
