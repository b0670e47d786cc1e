#!/usr/bin/env python3
# Float reference for a qwen2 GGUF, in the formats of shared/reference (README there):
#   PREFIX-logits.jsonl  {"name", "text", "ids", "mean_nll", "top5"}  (top5: [[id, logit] x5] per position)
#   PREFIX-greedy.jsonl  {"name", "text", "ids", "greedy_ids", "greedy_text", "top1_top2_gap"}
# Chat rows also carry "user" (the user turn the ids were templated from) so a test can rebuild the ids.
#
# How: transformers loads the GGUF (`from_pretrained(dir, gguf_file=...)`), which dequantizes every
# tensor to float32 (Q5_0/Q4_K/Q6_K/Q8_0 through the gguf package), and runs its own Qwen2 forward pass
# (biases on Q/K/V, NEOX rotary pairing, rope base and RMS eps from the GGUF metadata) in float32 on
# the CPU, with no quantized activations. Token ids come from transformers' tokenizer built from the same
# GGUF; chat rows use the GGUF's chat template (ChatML, Qwen's default system line), so their ids hold
# the <|im_start|>/<|im_end|> control tokens. Tests/ModelTests/Qwen2ReferenceTests.swift checks that our
# tokenizer gives the same ids, so both sides run on identical ids.
#
# Needs torch (CPU), transformers and gguf, in a virtualenv outside the repo, e.g.:
#   python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install "torch==2.13.0+cpu" transformers gguf
# Run (0.5B: about a minute on 2 cores; 1.5B: a few minutes, ~12 GB of float32 while loading):
#   /tmp/venv-ref/bin/python Scripts/reference-logits.py "$(longheads model path qwen2.5-coder-0.5b)" \
#       Tests/ModelTests/Fixtures/qwen2
# writes Tests/ModelTests/Fixtures/qwen2-logits.jsonl and qwen2-greedy.jsonl. Logs go to stderr.
# An optional third argument sets the greedy steps (default 32); 0 writes only the logits file (the greedy
# loop re-runs the whole sequence per step and is most of the time).
import json, math, os, sys

import gguf
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

GREEDY_STEPS = 32
MAX_TOKENS = 64

# (name, text, chat): a few short texts of different kinds; chat texts are the user's turn.
TEXTS = [
    ("prose", "The lighthouse keeper climbed the spiral stairs every evening at dusk. From the gallery he could "
              "see the whole bay: the fishing boats returning, the ferry to the island, and the dark line of weather.", False),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n"
             "        a, b = b, a + b\n    return a\n\nprint(fibonacci(", False),
    ("digits", "Invoice 2026-0417: 3 items at 19.99 EUR, total 59.97; due 2026-12-31, ref 5550100.", False),
    ("cjk", "大型语言模型在众多领域取得了显著性能。日本語のテキストも読めます。北京是中国的首都，", False),
    ("swift", "let xs = [3, 1, 2]\nlet sorted = xs.sorted(by: >)\nfor x in sorted {\n    print(", False),
    ("chat-math", "What is 17 * 23? Answer with the number only.", True),
    ("chat-code", "Write a Python one-liner that reverses a string s.", True),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def dequantized(reader, name):
    t = next(t for t in reader.tensors if t.name == name)
    w = gguf.quants.dequantize(t.data, t.tensor_type)
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).reshape(*reversed([int(d) for d in t.shape]))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: reference-logits.py MODEL.gguf OUT_PREFIX [GREEDY_STEPS]")
    path, prefix = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) == 4 else GREEDY_STEPS
    d, f = os.path.split(os.path.abspath(path))
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    c = model.config
    log(f"{c.model_type}: layers {c.num_hidden_layers}, heads {c.num_attention_heads}/{c.num_key_value_heads}, "
        f"rope_theta {getattr(c, 'rope_theta', None) or c.rope_parameters}, rms_eps {c.rms_norm_eps}, "
        f"tied {c.tie_word_embeddings}")

    # The output matrix must be the file's: `output.weight` when present (0.5B/1.5B Qwen2.5 GGUFs carry one),
    # else the token embedding. A loader that ties them regardless would give a reference of another model.
    reader = gguf.GGUFReader(path)
    names = {t.name for t in reader.tensors}
    want = dequantized(reader, "output.weight" if "output.weight" in names else "token_embd.weight")
    got = model.get_output_embeddings().weight.detach()
    if got.shape != want.shape or not torch.equal(got, want):
        sys.exit("reference-logits: the loaded output matrix is not the GGUF's (tied/untied mismatch)")
    log("output matrix: " + ("output.weight" if "output.weight" in names else "token_embd.weight (tied)"))

    specials = {tok.convert_tokens_to_ids(s) for s in ("<|im_end|>", "<|endoftext|>")} | {tok.eos_token_id}
    with open(prefix + "-logits.jsonl", "w") as lf, open(prefix + "-greedy.jsonl" if steps else os.devnull, "w") as gf:
        for name, text, chat in TEXTS:
            row = {"name": name}
            if chat:
                full = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
                ids = tok(full, add_special_tokens=False)["input_ids"]
                row.update(text=full, user=text)
            else:
                ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                row.update(text=text)
            if len(ids) > MAX_TOKENS:
                sys.exit(f"reference-logits: {name} has {len(ids)} tokens (> {MAX_TOKENS}); shorten it")
            row["ids"] = ids
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].float()
            lsm = torch.log_softmax(logits.double(), dim=-1)
            nll = -sum(lsm[i, ids[i + 1]].item() for i in range(len(ids) - 1)) / (len(ids) - 1)
            top = torch.topk(logits, 5, dim=-1)
            top5 = [[[int(j), round(float(v), 4)] for j, v in zip(top.indices[i], top.values[i])] for i in range(len(ids))]
            lf.write(json.dumps({**row, "mean_nll": round(nll, 6), "top5": top5}, ensure_ascii=False) + "\n")
            lf.flush()

            # Greedy: recompute the whole sequence each step (no KV cache), so each step is the same float32
            # forward pass as above (only the last row through the output matrix); stop after
            # <|im_end|>/<|endoftext|>, kept in greedy_ids as shared/ does.
            seq, out, gaps = list(ids), [], []
            for _ in range(steps):
                with torch.no_grad():
                    last = model(torch.tensor([seq]), logits_to_keep=1).logits[0, -1].float()
                v, j = torch.topk(last, 2)
                out.append(int(j[0])); gaps.append(round(float(v[0] - v[1]), 4)); seq.append(int(j[0]))
                if int(j[0]) in specials:
                    break
            gtext = tok.decode(out)
            gf.write(json.dumps({**row, "greedy_ids": out, "greedy_text": gtext, "top1_top2_gap": gaps},
                                ensure_ascii=False) + "\n")
            log(f"{name}: {len(ids)} tokens, mean NLL {nll:.4f}, greedy {gtext!r}")


if __name__ == "__main__":
    main()
