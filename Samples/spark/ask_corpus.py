"""Spark job (b): answer a questions file against a longheads corpus, partitioned by question.

    python3 ask_corpus.py --corpus DIR --model NAME --questions Q.jsonl --out ANSWERS.jsonl \
        [--partitions N] [--master local[2]] [--ask-arg=--max-tokens --ask-arg=32 …]

Each partition writes its questions to a temporary file and runs one `longheads ask --corpus DIR
--questions FILE` (the model is loaded once per partition). ANSWERS.jsonl holds one line per question,
in the order of Q.jsonl: {"id", "answer", "segment", "sources"} as `ask --corpus --questions` prints them
(without the timing).
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import longheads_spark as lh  # noqa: E402


def ask_task(corpus, model, extra):
    def task(rows):
        rows = list(rows)
        if not rows:
            return []
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for order, q in rows:
                # The line's order stands in for the id, so that answers map back whatever the id is.
                f.write(json.dumps({"id": order, "question": q["question"]}) + "\n")
            path = f.name
        try:
            answers = lh.json_lines(lh.run(["ask", "--corpus", corpus, "--model", model, "--questions", path] + extra))
        finally:
            os.unlink(path)
        by_order = {a["id"]: a for a in answers}
        return [(order, {"id": q.get("id", order + 1), "answer": by_order[order]["answer"],
                         "segment": by_order[order]["segment"], "sources": by_order[order]["sources"]}) for order, q in rows]
    return task


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--partitions", type=int, default=0, help="default: Spark's default parallelism")
    ap.add_argument("--master", default=None)
    ap.add_argument("--ask-arg", action="append", default=[])
    a = ap.parse_args()
    questions = []
    with open(a.questions, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                q = json.loads(line)
                if not isinstance(q, dict) or not isinstance(q.get("question"), str):
                    sys.exit(f"{a.questions}: line {n}: no \"question\" string")
                questions.append(q)
    spark = lh.spark_session("longheads-ask-corpus", a.master)
    sc = spark.sparkContext
    parts = a.partitions or sc.defaultParallelism
    rdd = sc.parallelize(list(enumerate(questions)), max(1, min(parts, len(questions))))
    answers = sorted(rdd.mapPartitions(ask_task(os.path.abspath(a.corpus), a.model, a.ask_arg)).collect(), key=lambda x: x[0])
    with open(a.out, "w", encoding="utf-8") as f:
        for _, ans in answers:
            f.write(json.dumps(ans, ensure_ascii=False) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()
