#!/usr/bin/env python3
"""Scores the output of the longheads jobs on the samples of generate.py (python3, standard library only).

  evaluate.py ask QUESTIONS.jsonl ANSWERS.jsonl
      Per question: does the answer contain the expected text, and does one of its sources overlap the
      clause that holds the answer; then the totals.
  evaluate.py filter RECORDS.txt LABELS.txt OUTPUT.txt [--threshold T]
      Precision and recall of the records `longheads filter` passed (OUTPUT, with or without --score)
      against the ground-truth labels (one 0/1 per record line). With --threshold, OUTPUT holds scores
      (`--score`) and only records scored at or above T count as passed.
"""
import json
import sys


def ask(questions, answers):
    qs = {q["id"]: q for q in map(json.loads, open(questions))}
    n = right = cited = 0
    for a in map(json.loads, open(answers)):
        q = qs[a["id"]]
        n += 1
        ok = any(alt.lower() in a["answer"].lower() for alt in q["expect"].split("|"))
        hit = any(s["start"] < q["end"] and s["end"] > q["start"] for s in a["sources"])
        right += ok
        cited += hit
        print(f'{a["id"]}  answer {"right" if ok else "wrong"}  source {"hit " if hit else "miss"}  '
              f'clause {q["clause"]} bytes {q["start"]}-{q["end"]}  sources {[(s["start"], s["end"]) for s in a["sources"]]}')
    print(f"answers containing the expected text: {right}/{n}; answers whose sources include the clause: {cited}/{n}")


def filt(records, labels, output, threshold=None):
    lines = open(records).read().splitlines()
    truth = [l == "1" for l in open(labels).read().split()]
    index = {l: i for i, l in enumerate(lines)}
    passed = set()
    passed_all = set()
    for l in open(output).read().splitlines():
        head, _, rest = l.partition("\t")
        scored = bool(rest) and head.replace(".", "").isdigit()
        rec = rest if scored else l
        passed_all.add(index[rec])
        if threshold is not None and (not scored or float(head) < threshold):
            continue
        passed.add(index[rec])
    if threshold is not None and passed_all:
        # A run with every score (--threshold 0 --score) that was stopped early: score the records it reached.
        n = max(passed_all) + 1
        lines, truth = lines[:n], truth[:n]
        passed = {i for i in passed if i < n}
    tp = sum(1 for i in passed if truth[i])
    fp = len(passed) - tp
    fn = sum(truth) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    at = f"threshold {threshold}: " if threshold is not None else ""
    print(f"{at}records {len(lines)}, positives {sum(truth)}, passed {len(passed)}: "
          f"true positives {tp}, false positives {fp}, false negatives {fn}; "
          f"precision {precision:.3f}, recall {recall:.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "ask":
        ask(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "filter":
        filt(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 7 and sys.argv[1] == "filter" and sys.argv[5] == "--threshold":
        filt(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[6]))
    else:
        sys.exit(__doc__)
