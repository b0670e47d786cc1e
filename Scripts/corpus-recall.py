#!/usr/bin/env python3
"""Routing recall of `ask --corpus` (Docs/CORPUS.md): for questions with known answer byte ranges
(Samples/generate.py contract --questions), how often the opened segment and the cited chunks hold the
answering clause, and how often the answer contains the expected text.

    Scripts/corpus-recall.py LONGHEADS CORPUS DOC Q.jsonl [ask options…]

DOC is the document the questions' byte ranges refer to (as recorded in the corpus: same absolute path).
Prints one JSON line per question, then a summary line.
"""
import json
import os
import subprocess
import sys

lh, corpus, doc, qpath = sys.argv[1:5]
extra = sys.argv[5:]
doc = os.path.abspath(doc)
segments = {s["segment"]: s for s in map(json.loads, subprocess.run([lh, "corpus", "list", corpus], check=True,
                                                                      capture_output=True, text=True).stdout.splitlines())}
questions = [json.loads(l) for l in open(qpath) if l.strip()]
out = subprocess.run([lh, "ask", "--corpus", corpus, "--questions", qpath] + extra, check=True, capture_output=True, text=True).stdout
answers = {a["id"]: a for a in map(json.loads, out.splitlines())}


def overlaps(file, start, end, q):
    return file == doc and start < q["end"] and end > q["start"]


n = routed = top1 = top3 = right = 0
for q in questions:
    a = answers[q["id"]]
    s = segments[a["segment"]]
    r = overlaps(s["source"], s["start"], s["end"], q)
    t1 = any(overlaps(x["file"], x["start"], x["end"], q) for x in a["sources"][:1])
    t3 = any(overlaps(x["file"], x["start"], x["end"], q) for x in a["sources"][:3])
    ok = any(e.lower() in a["answer"].lower() for e in q["expect"].split("|"))
    n += 1
    routed += r
    top1 += t1
    top3 += t3
    right += ok
    print(json.dumps({"id": q["id"], "routed": r, "top1": t1, "top3": t3, "right": ok, "expect": q["expect"], "answer": a["answer"],
                      "segment": [os.path.basename(s["source"]), s["start"], s["end"]], "clause": [q["start"], q["end"]]}))
print(json.dumps({"questions": n, "segments": len(segments), "routing_recall": routed / n, "chunk_recall_top1": top1 / n,
                  "chunk_recall_top3": top3 / n, "answers_right": right / n}))
