"""Helper of gen_server_probs_fixture.sh: asks llama-server, then llama.cpp's batch logits."""

import array
import json
import math
import subprocess
import sys
import tempfile
import urllib.request

base, logits_bin, model = sys.argv[1:4]
N_VOCAB = 49152

CASES = [
    {"prompt": "I believe the meaning of life is", "n_probs": 5, "temperature": 0,
     "n_predict": 6},
    {"prompt": "Today was the day. Today I would finally become a", "n_probs": 5,
     "temperature": 1.0, "n_predict": 4, "post_sampling_probs": True, "seed": 42},
    {"messages": [{"role": "system", "content": "Book"},
                  {"role": "user", "content": "What is the best book"}],
     "max_tokens": 5, "logprobs": True, "top_logprobs": 3, "temperature": 0},
]


def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))


for case in CASES:
    chat = "messages" in case
    if chat:
        c = post("/v1/chat/completions", case)["choices"][0]
        content, probs = c["message"]["content"], c["logprobs"]["content"]
        prompt = post("/apply-template", {"messages": case["messages"]})["prompt"]
    else:
        d = post("/completion", case)
        content, probs = d["content"], d["completion_probabilities"]
        prompt = case["prompt"]
    prompt_ids = post("/tokenize", {"content": prompt, "add_special": True,
                                    "parse_special": True})["tokens"]
    out = {"request": case, "content": content, "completion_probabilities": probs}
    if not case.get("post_sampling_probs"):
        ids = prompt_ids + [p["id"] for p in probs]
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            subprocess.run([logits_bin, model, "ids:" + ",".join(map(str, ids)), f.name, "1"],
                           check=True, capture_output=True)
            logits = array.array("f")
            logits.frombytes(open(f.name, "rb").read())
        n_top = case.get("n_probs") or case.get("top_logprobs")
        batch = []
        for i, p in enumerate(probs):
            pos = len(prompt_ids) - 1 + i
            row = logits[pos * N_VOCAB:(pos + 1) * N_VOCAB]
            m = max(row)
            lse = m + math.log(sum(math.exp(x - m) for x in row))
            top = sorted(range(N_VOCAB), key=lambda t: (-row[t], t))[:n_top]
            batch.append({"id": p["id"], "logprob": row[p["id"]] - lse,
                          "top": [[t, row[t] - lse] for t in top]})
        out["llama_cpp_batch"] = batch
    print(json.dumps(out))
