#!/usr/bin/env python3
# Reference ids for Tests/TokenizationTests/Fixtures/qwen2-tokenizer.jsonl (Docs/ARCHITECTURES.md):
# byte-level BPE over a qwen2 GGUF's vocab and merges with the qwen2 pre-tokenizer regex (llama.cpp
# LLAMA_VOCAB_PRE_TYPE_QWEN2). Needs the gguf and regex packages. Reads {name,text} JSON lines on stdin.
# Usage: Scripts/qwen2-tokenizer-ref.py MODEL.gguf < texts.jsonl > qwen2-tokenizer.jsonl
import json, sys, regex, gguf
path = sys.argv[1]
r = gguf.GGUFReader(path)
def strs(k):
    f = r.fields[k]; return [bytes(f.parts[i]).decode('utf-8') for i in f.data]
tokens = strs('tokenizer.ggml.tokens'); merges = strs('tokenizer.ggml.merges')
tid = {t: i for i, t in enumerate(tokens)}
rank = {tuple(m.split(' ', 1)): i for i, m in enumerate(merges)}
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256)); cs = bs[:]; n = 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
b2u = {b: chr(c) for b, c in zip(bs, cs)}
PAT = regex.compile(r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
def bpe(word):
    parts = list(word)
    while len(parts) > 1:
        best = min(((rank.get((parts[i], parts[i+1]), 1 << 30), i) for i in range(len(parts) - 1)))
        if best[0] == 1 << 30: break
        i = best[1]; parts[i:i+2] = [parts[i] + parts[i+1]]
    return [tid[p] for p in parts]
def encode(text):
    ids = []
    for m in PAT.findall(text):
        ids += bpe(''.join(b2u[b] for b in m.encode('utf-8')))
    return ids
for line in sys.stdin:
    d = json.loads(line)
    print(json.dumps({"name": d["name"], "text": d["text"], "ids": encode(d["text"])}, ensure_ascii=False))
