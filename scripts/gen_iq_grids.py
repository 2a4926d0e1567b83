#!/usr/bin/env python3
"""Writes crates/kernels/src/quant/iq_grids.rs: the lattice grids of ggml's low-bit IQ types.

The tables are data, not code: each is read from llama.cpp's `ggml/src/ggml-common.h` (the
`GGML_TABLE_BEGIN(type, name, size)` blocks) and written out as a Rust array of the same name
and element type. The sign tables are not copied: `quant::iq` computes them (they are the 7-bit
index plus an even-parity bit). Run from the repository root with the path to ggml-common.h:

    python3 scripts/gen_iq_grids.py /path/to/llama.cpp/ggml/src/ggml-common.h
"""
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/src/quant/iq_grids.rs"
TABLES = [
    # (C name, Rust element type, entries, what it is)
    ("iq2xxs_grid", "u64", 256, "`IQ2_XXS`: 8 bytes each in {8, 25, 43}"),
    ("iq2xs_grid", "u64", 512, "`IQ2_XS`: 8 bytes each in {8, 25, 43}"),
    ("iq2s_grid", "u64", 1024, "`IQ2_S`: 8 bytes each in {8, 25, 43}"),
    ("iq3xxs_grid", "u32", 256, "`IQ3_XXS`: 4 bytes each in {4, 12, …, 62}"),
    ("iq3s_grid", "u32", 512, "`IQ3_S`: 4 bytes each in {1, 3, …, 15}"),
    ("iq1s_grid", "u64", 2048, "`IQ1_S` and `IQ1_M`: 8 signed bytes each in {−1, 0, 1}"),
]


def main():
    src = Path(sys.argv[1]).read_text()
    out = [
        "//! The lattice grids of ggml's low-bit IQ types, byte `j` of entry `k` being value `j` of",
        "//! grid point `k` (entries are little-endian). Generated from llama.cpp's",
        "//! `ggml/src/ggml-common.h` by `scripts/gen_iq_grids.py`; do not edit.",
        "",
        "#![allow(clippy::unreadable_literal)]",
    ]
    for name, ty, size, what in TABLES:
        m = re.search(
            r"GGML_TABLE_BEGIN\(uint(?:64|32)_t, " + name + r", \w+\)(.*?)GGML_TABLE_END\(\)",
            src,
            re.S,
        )
        if not m:
            sys.exit(f"{name} not found")
        values = re.findall(r"0x[0-9a-fA-F]+", m.group(1))
        if len(values) != size:
            sys.exit(f"{name}: {len(values)} entries, expected {size}")
        out.append("")
        out.append(f"/// The grid of {what}.")
        out.append(f"pub(crate) static {name.upper()}: [{ty}; {size}] = [")
        per_line = 4 if ty == "u64" else 8
        for i in range(0, size, per_line):
            out.append("    " + " ".join(v.lower() + "," for v in values[i : i + per_line]))
        out.append("];")
    OUT.write_text("\n".join(out) + "\n")


main()
