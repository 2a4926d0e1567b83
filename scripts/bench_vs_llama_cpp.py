#!/usr/bin/env python3
"""hearth beside llama.cpp on the same machine, threads and GGUF files.

Alternates the two programs ROUNDS times per model and thread count; each round runs
`hearth bench -r REPS -o json` and llama.cpp (through llama-cpp-python's C API, timed the way
llama-bench times it) with the same tests, then prints the median tokens/s of each and the
median of the per-round ratios hearth / llama.cpp.

    scripts/bench_vs_llama_cpp.py [-r ROUNDS] [--reps N] [-t 1,2] [-p 512] [-n 128] MODEL...

llama.cpp side: one context per test, a persistent ggml threadpool attached (as llama-bench and
llama-cli do), one warm-up run, then N timed runs: pp = a prompt of random tokens decoded in
batches of 512, tg = single-token decodes of random tokens.
"""
import argparse
import ctypes
import json
import os
import random
import statistics
import subprocess
import sys
import time

try:
    import llama_cpp as L
except ImportError:
    sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36 "
             "(it builds llama.cpp for this CPU; see docs/benchmarks.md)")


class ThreadpoolParams(ctypes.Structure):
    # ggml.h: struct ggml_threadpool_params, GGML_MAX_N_THREADS = 512
    _fields_ = [("cpumask", ctypes.c_bool * 512), ("n_threads", ctypes.c_int),
                ("prio", ctypes.c_int), ("poll", ctypes.c_uint32),
                ("strict_cpu", ctypes.c_bool), ("paused", ctypes.c_bool)]


def llama_threadpool(ctx, n_threads):
    import llama_cpp.llama_cpp as LL
    lib = LL._lib
    libdir = os.path.dirname(lib._name)
    ggml = ctypes.CDLL(os.path.join(libdir, "libggml.so"))
    cpu = ctypes.CDLL(os.path.join(libdir, "libggml-cpu.so"))
    ggml.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(ThreadpoolParams), ctypes.c_int]
    cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(ThreadpoolParams)]
    cpu.ggml_threadpool_new.restype = ctypes.c_void_p
    p = ThreadpoolParams()
    ggml.ggml_threadpool_params_init(ctypes.byref(p), n_threads)
    p.poll = 50
    tp = cpu.ggml_threadpool_new(ctypes.byref(p))
    lib.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.llama_attach_threadpool(ctx, tp, None)
    return tp


_silence = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda *a: None)


def llama_cpp_run(model_path, n_threads, n_prompt, n_gen, reps):
    """Tokens/s samples of one test (pp if n_prompt, else tg) in llama.cpp."""
    L.llama_log_set(_silence, None)
    L.llama_backend_init()
    model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
    if not model:
        sys.exit(f"llama.cpp cannot load {model_path}")
    cp = L.llama_context_default_params()
    cp.n_ctx = n_prompt + n_gen + 16
    cp.n_batch = cp.n_ubatch = 512
    cp.n_threads = cp.n_threads_batch = n_threads
    ctx = L.llama_init_from_model(model, cp)
    llama_threadpool(ctx, n_threads)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    rng = random.Random(42)

    def decode(toks):
        arr = (L.llama_token * len(toks))(*toks)
        if L.llama_decode(ctx, L.llama_batch_get_one(arr, len(toks))) != 0:
            sys.exit("llama_decode failed")

    def once(n_p, n_g):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        t0 = time.perf_counter_ns()
        toks = [rng.randrange(n_vocab) for _ in range(n_p)]
        for i in range(0, n_p, 512):
            decode(toks[i:i + 512])
        L.llama_synchronize(ctx)
        for _ in range(n_g):
            decode([rng.randrange(n_vocab)])
            L.llama_synchronize(ctx)
        return time.perf_counter_ns() - t0

    once(n_prompt, min(n_gen, 1))
    samples = [(n_prompt + n_gen) * 1e9 / once(n_prompt, n_gen) for _ in range(reps)]
    L.llama_free(ctx)
    L.llama_model_free(model)
    return samples


def llama_cpp_whole_run(model_path, n_threads, prompt, n_gen, baseline):
    """Load time (ms) and the generation run, in this (child) process; with `baseline` only the
    Python import, to subtract the interpreter's own memory."""
    L.llama_log_set(_silence, None)
    L.llama_backend_init()
    if baseline:
        return {"load_ms": 0.0}
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(model_path.encode(), L.llama_model_default_params())
    load_ms = (time.perf_counter() - t0) * 1e3
    cp = L.llama_context_default_params()
    cp.n_ctx = 2048
    cp.n_batch = cp.n_ubatch = 512
    cp.n_threads = cp.n_threads_batch = n_threads
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)
    buf = (L.llama_token * 512)()
    n = L.llama_tokenize(vocab, prompt.encode(), len(prompt.encode()), buf, 512, True, True)
    L.llama_decode(ctx, L.llama_batch_get_one(buf, n))
    n_vocab = L.llama_vocab_n_tokens(vocab)
    import numpy as np
    for _ in range(n_gen):
        logits = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(n_vocab,))
        tok = (L.llama_token * 1)(int(logits.argmax()))
        L.llama_decode(ctx, L.llama_batch_get_one(tok, 1))
    return {"load_ms": load_ms}


def child_peak_rss_mib(argv):
    """Runs argv under GNU time; returns (the completed process, its peak RSS in MiB)."""
    out = subprocess.run(["/usr/bin/time", "-f", "PEAK_RSS_KB %M"] + argv, check=True,
                         capture_output=True, text=True)
    kb = int(out.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    return out, kb / 1024


def whole_runs(hearth, model, n_threads):
    """Peak RSS and warm load time of a whole greedy run (-c 2048, 32 tokens), each program in
    a fresh process; llama.cpp's figure has the Python interpreter's baseline subtracted."""
    prompt = "The capital of France is"
    child = [sys.executable, __file__, "--llama-whole"]
    base, base_rss = child_peak_rss_mib(child + [model, str(n_threads), prompt, "1"])
    h, h_rss = child_peak_rss_mib([hearth, "run", "-m", model, "-p", prompt, "-n", "32",
                                   "--temp", "0", "-c", "2048", "-t", str(n_threads), "-v"])
    h_load = float(h.stderr.split("load time =")[1].split("ms")[0])
    l, l_rss = child_peak_rss_mib(child + [model, str(n_threads), prompt, "0"])
    return h_rss, h_load, l_rss - base_rss, json.loads(l.stdout)["load_ms"]


def hearth_run(hearth, model_path, n_threads, n_prompt, n_gen, reps):
    cmd = [hearth, "bench", "-m", model_path, "-p", str(n_prompt), "-n", str(n_gen),
           "-t", str(n_threads), "-r", str(reps), "-o", "json", "--no-cold-load"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return rows[0]["samples_ts"], rows[0].get("peak_rss_bytes"), rows[0].get("load_ms_warm")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("-r", "--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-t", "--threads", default="2")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--hearth", default="target/release/hearth")
    args = ap.parse_args()

    print(f"| model | threads | test | hearth t/s | llama.cpp t/s | ratio (median of {args.rounds}) |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for model in args.models:
        name = os.path.basename(model)
        for t in [int(x) for x in args.threads.split(",")]:
            for test, (n_p, n_g) in (("pp%d" % args.n_prompt, (args.n_prompt, 0)),
                                     ("tg%d" % args.n_gen, (0, args.n_gen))):
                ours, theirs, ratios = [], [], []
                for _ in range(args.rounds):
                    h, _, _ = hearth_run(args.hearth, model, t, n_p, n_g, args.reps)
                    lc = subprocess.run(
                        [sys.executable, __file__, "--llama-child", model, str(t), str(n_p),
                         str(n_g), str(args.reps)], check=True, capture_output=True, text=True)
                    l = json.loads(lc.stdout)
                    ours.append(statistics.median(h))
                    theirs.append(statistics.median(l))
                    ratios.append(ours[-1] / theirs[-1])
                print(f"| {name} | {t} | {test} | {statistics.median(ours):.1f} | "
                      f"{statistics.median(theirs):.1f} | {statistics.median(ratios):.2f}x |",
                      flush=True)
    print()
    print("| model | hearth peak RSS MiB | llama.cpp peak RSS MiB | ratio | hearth load ms | "
          "llama.cpp load ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in args.models:
        t = int(args.threads.split(",")[-1])
        runs = [whole_runs(args.hearth, model, t) for _ in range(args.rounds)]
        med = [statistics.median(r[i] for r in runs) for i in range(4)]
        print(f"| {os.path.basename(model)} | {med[0]:.1f} | {med[2]:.1f} | {med[0] / med[2]:.2f}x | "
              f"{med[1]:.1f} | {med[3]:.1f} | {med[1] / med[3]:.2f}x |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--llama-whole":
        _, _, m, t, prompt, baseline = sys.argv
        print(json.dumps(llama_cpp_whole_run(m, int(t), prompt, 32, baseline == "1")))
    elif len(sys.argv) > 1 and sys.argv[1] == "--llama-child":
        # Each llama.cpp measurement runs in a process of its own, as each hearth one does.
        _, _, m, t, p, g, r = sys.argv
        print(json.dumps(llama_cpp_run(m, int(t), int(p), int(g), int(r))))
    else:
        main()
