#!/usr/bin/env python3
"""Classify the same records with llama.cpp's llama-server (prompt caching) as `longheads filter` does.

Usage: filter-vs-llama-server.py LLAMA_SERVER MODEL.gguf RECORDS QUESTION [--parallel N] [--threads T]

Starts llama-server on a free local port, then asks, for each record (one line), for the next-token
distribution after the default filter prompt (Sources/Pipeline/Classify.swift `defaultTemplate`: the same
four examples, the record, the question and "Answer:"), the part before the record and the rest
tokenized on their own, as longheads does. `cache_prompt` keeps the
examples' keys and values between requests, as longheads computes them once. The score is
P(yes tokens) / (P(yes tokens) + P(no tokens)) over the top 40 tokens; records with score >= 0.5 go to
stdout, in input order. Timing (records/s, wall) goes to stderr. With --parallel N, N slots and N client
threads: llama-server batches the N records' tokens into one forward pass (continuous batching), as
`longheads filter` packs records. Nothing is installed or written besides stdout/stderr.
"""
import json, os, socket, subprocess, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

TEMPLATE_BEFORE = ("Text: I love this song, it makes me dance.\nQuestion: Is the text about music?\nAnswer: yes\n\n"
                   "Text: The train was late again this morning.\nQuestion: Is the text about food?\nAnswer: no\n\n"
                   "Text: My cat sleeps on the sofa all day.\nQuestion: Is the text about an animal?\nAnswer: yes\n\n"
                   "Text: Please send me the report by Friday.\nQuestion: Is the text about the weather?\nAnswer: no\n\n"
                   "Text: ")
YES = {"yes"}
NO = {"no"}


def main():
    args = sys.argv[1:]
    opts = {"--parallel": "1", "--threads": "2"}
    pos = []
    i = 0
    while i < len(args):
        if args[i] in opts:
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    server, model, records_path, question = pos
    parallel, threads = int(opts["--parallel"]), opts["--threads"]
    after = "\nQuestion: " + question.strip() + "\nAnswer:"
    with open(records_path, encoding="utf-8") as f:
        records = [line.rstrip("\n") for line in f if line.strip()]
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    proc = subprocess.Popen([server, "-m", model, "-t", threads, "-tb", threads, "-c", str(512 * parallel), "-np", str(parallel),
                             "--port", str(port), "--host", "127.0.0.1", "-ngl", "0", "--no-webui"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.2)
        else:
            sys.exit("llama-server did not start")

        def tokenize(text):
            req = urllib.request.Request(base + "/tokenize", data=json.dumps({"content": text, "add_special": False}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                return json.load(r)["tokens"]

        # One prompt of mixed pieces: the ids of the part before the record and after it, tokenized once,
        # around the record's text (tokenized by the server on its own).
        before_ids, after_ids = tokenize(TEMPLATE_BEFORE), tokenize(after)

        def score(rec):
            body = json.dumps({"prompt": before_ids + [rec] + after_ids, "n_predict": 1, "n_probs": 40, "temperature": 0,
                               "cache_prompt": True, "post_sampling_probs": False}).encode()
            req = urllib.request.Request(base + "/completion", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                out = json.load(r)
            probs = out["completion_probabilities"][0]["top_logprobs"]
            import math
            py = sum(math.exp(p["logprob"]) for p in probs if p["token"].strip().lower() in YES)
            pn = sum(math.exp(p["logprob"]) for p in probs if p["token"].strip().lower() in NO)
            return py / (py + pn) if py + pn > 0 else 0.0

        score(records[0])  # warm-up: the examples' prefix enters the cache
        t0 = time.time()
        with ThreadPoolExecutor(max_workers=parallel) as ex:
            scores = list(ex.map(score, records))
        dt = time.time() - t0
        for rec, sc in zip(records, scores):
            if sc >= 0.5:
                print(rec)
        sys.stderr.write(json.dumps({"records": len(records), "seconds": round(dt, 2), "records_per_second": round(len(records) / dt, 3),
                                     "parallel": parallel, "threads": int(threads), "passed": sum(sc >= 0.5 for sc in scores)}) + "\n")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
