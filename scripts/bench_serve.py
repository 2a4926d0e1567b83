#!/usr/bin/env python3
"""Serving throughput of `hearth serve` beside `llama-server`, same model, threads and load.

    scripts/bench_serve.py --model M.gguf --hearth target/release/hearth \
        --llama-server /path/to/llama-server [--threads 2] [--streams 1,4,8] [--rounds 3]

For each number of parallel streams S, starts each server with `-np S` on a loopback port,
waits for /health, then runs S client threads that each send requests back to back
(`POST /completion`, a fixed prompt per request, `n_predict` tokens, temperature 0,
`ignore_eos` so every request generates the same number of tokens) until `--requests` have
been answered. Reports requests/s and aggregate generated tokens/s (the servers' own
`tokens_predicted` counts), alternating the two servers each round; medians over the rounds.
Only loopback traffic; every loop is bounded.
"""

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = [
    "The history of the printing press begins",
    "Write a short story about a lighthouse keeper who",
    "Explain how a refrigerator works:",
    "The three most important rules of cooking are",
    "Once upon a time, in a village by the sea,",
    "A good way to learn a new language is",
    "The main causes of the French Revolution were",
    "Here is a recipe for bread:",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready in time")


def run_load(port, streams, n_requests, n_predict):
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "errors": 0, "tokens": 0}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = state["next"]
                if i >= n_requests:
                    return
                state["next"] += 1
            body = json.dumps(
                {
                    "prompt": PROMPTS[i % len(PROMPTS)],
                    "n_predict": n_predict,
                    "temperature": 0,
                    "ignore_eos": True,
                    "cache_prompt": False,
                }
            )
            try:
                conn.request("POST", "/completion", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = json.loads(r.read())
                with lock:
                    if r.status == 200:
                        state["ok"] += 1
                        state["tokens"] += int(data.get("tokens_predicted", 0))
                    else:
                        state["errors"] += 1
            except (OSError, ValueError, http.client.HTTPException):
                with lock:
                    state["errors"] += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    threads = [threading.Thread(target=client) for _ in range(streams)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.time() - t0
    return state["ok"] / dt, state["tokens"] / dt, state["errors"]


def measure(cmd, streams, args):
    port = free_port()
    full = cmd + [
        "-m", args.model, "--host", "127.0.0.1", "--port", str(port), "-np", str(streams),
        "-c", str(args.ctx_per_slot * streams), "-t", str(args.threads),
    ]
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        run_load(port, streams, streams, args.n_predict)  # warm-up
        return run_load(port, streams, args.requests, args.n_predict)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--hearth", required=True)
    p.add_argument("--llama-server")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--streams", default="1,4,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--n-predict", type=int, default=64)
    p.add_argument("--ctx-per-slot", type=int, default=512)
    args = p.parse_args()

    servers = [("hearth", [args.hearth, "serve"])]
    if args.llama_server:
        servers.append(("llama-server", [args.llama_server]))
    print("| server | streams | requests/s | generated tokens/s | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    results = {}
    for s in [int(x) for x in args.streams.split(",")]:
        for _ in range(args.rounds):
            for name, cmd in servers:
                results.setdefault((name, s), []).append(measure(cmd, s, args))
        for name, _ in servers:
            rs = results[(name, s)]
            rps = statistics.median(r[0] for r in rs)
            tps = statistics.median(r[1] for r in rs)
            errors = sum(r[2] for r in rs)
            print(f"| {name} | {s} | {rps:.2f} | {tps:.1f} | {errors} |")
            sys.stdout.flush()
    if args.llama_server:
        print()
        for s in [int(x) for x in args.streams.split(",")]:
            h = statistics.median(r[1] for r in results[("hearth", s)])
            l = statistics.median(r[1] for r in results[("llama-server", s)])
            print(f"{s} streams: hearth / llama-server tokens/s = {h / l:.2f}x")


if __name__ == "__main__":
    main()
