#!/usr/bin/env python3
"""llama.cpp's tokenizer speed on the text `cargo bench -p text --bench tokenize` uses: the GPL-3
(crates/text/benches/data/gpl-3.txt) repeated to just over 1 MB, encoded in one call through
llama-cpp-python's `Llama.tokenize` (llama_tokenize) on a vocabulary-only load, and the 35 KB
text alone per call; best of 5 each.

    python3 scripts/bench_tokenize_llama_cpp.py MODEL.gguf [MODEL.gguf ...]
"""
import sys
import time
from pathlib import Path

import llama_cpp

GPL = (Path(__file__).resolve().parent.parent / "crates/text/benches/data/gpl-3.txt").read_bytes()
TEXT = GPL * ((1 << 20) // len(GPL) + 1)

def timed(llm, text):
    t = time.perf_counter()
    llm.tokenize(text, add_bos=True, special=False)
    return time.perf_counter() - t


for path in sys.argv[1:]:
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    best, n = float("inf"), 0
    for _ in range(5):
        t = time.perf_counter()
        ids = llm.tokenize(TEXT, add_bos=True, special=False)
        best = min(best, time.perf_counter() - t)
        n = len(ids)
    one = min(timed(llm, GPL) for _ in range(5))
    n_one = len(llm.tokenize(GPL, add_bos=True, special=False))
    print(f"{Path(path).name}: {n} tokens in {best * 1e3:.1f} ms = {n / best / 1e6:.2f} M tokens/s "
          f"({len(TEXT) / best / 1e6:.1f} MB/s); one 35 KB copy per call {n_one / one / 1e6:.2f} M tokens/s")
