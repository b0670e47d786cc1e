#!/usr/bin/env python3
"""Writes Tests/KernelsTests/Fixtures/q5-golden.json: Q5_0 and Q5_1 blocks quantized and
dequantized by an outside implementation (the `gguf` Python package, gguf.quants, which follows
ggml's block_q5_0 / block_q5_1), so the Swift/C reference dequantization is checked against code
we did not write. Run once by hand (`python3 Scripts/golden-q5.py`); CI only reads the fixture.
"""
import json
from importlib import metadata
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

rng = np.random.default_rng(12)
blocks = [
    rng.standard_normal(32) * 0.02,                        # typical weights
    rng.standard_normal(32) * 0.02 + 0.01,                 # off-centre
    np.concatenate([rng.standard_normal(31) * 0.01, [-0.5]]),  # negative outlier sets d
    np.concatenate([[0.75], rng.standard_normal(31) * 0.1]),   # positive outlier
    np.linspace(-1.0, 1.0, 32),                            # every level
    np.zeros(32),                                          # zero block (d = 0)
    np.full(32, 0.3),                                      # constant block
    rng.standard_normal(32) * 1e-6,                        # tiny: subnormal f16 scales
    rng.uniform(-40.0, 60.0, 32),                          # large
]
data = np.stack(blocks).astype(np.float32)

out = {"generator": "gguf (Python) " + metadata.version("gguf") + ", gguf.quants.quantize / dequantize",
       "types": {}}
for name, qtype in [("Q5_0", T.Q5_0), ("Q5_1", T.Q5_1)]:
    raw = quants.quantize(data, qtype)          # uint8 [blocks, bytes per block]
    deq = quants.dequantize(raw, qtype)          # float32 [blocks, 32]
    out["types"][name] = [
        {"bytes": bytes(raw[i]).hex(), "values": [float(v) for v in deq[i]]}
        for i in range(len(blocks))
    ]

path = pathlib.Path(__file__).resolve().parent.parent / "Tests/KernelsTests/Fixtures/q5-golden.json"
# One block a line, so a diff of the fixture stays readable.
lines = ["{", f' "generator": {json.dumps(out["generator"])},', ' "types": {']
for t, (name, entries) in enumerate(out["types"].items()):
    lines.append(f'  "{name}": [')
    lines += ["   " + json.dumps(e) + ("," if i + 1 < len(entries) else "") for i, e in enumerate(entries)]
    lines.append("  ]" + ("," if t + 1 < len(out["types"]) else ""))
lines += [" }", "}"]
path.write_text("\n".join(lines) + "\n")
print(f"wrote {path}")
