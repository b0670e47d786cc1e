"""Spark job (a): build a longheads corpus from documents, one Spark task per segment.

    python3 ingest_corpus.py --corpus DIR --model NAME [--segment-tokens N] [--master local[2]] \
        [--ingest-arg=--chunk --ingest-arg=256 …] FILE…

The driver plans the segments (`longheads corpus plan`: byte ranges cut after paragraphs), the tasks run
`longheads ingest --corpus DIR --no-index --source-range START:END FILE` (one partition per segment), and
the driver then merges them (`longheads corpus index DIR`). A task that fails or is killed is retried by
Spark (spark.task.maxFailures; in local mode give local[N,F]); a speculative or retried copy of a task
adds the same segment id, which is idempotent and crash-safe (Docs/CORPUS.md), so the corpus is the one
`longheads ingest --corpus DIR --segment-tokens N FILE…` builds on one machine, byte for byte.

Test hook: LONGHEADS_SPARK_KILL_FIRST=SECONDS kills (SIGKILL) the first attempt of the first segment's
ingest after SECONDS and fails that attempt, so that Spark retries it (Scripts/spark-test.sh).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import longheads_spark as lh  # noqa: E402


def ingest_task(corpus, model, extra, kill_first):
    def task(index, rows):
        from pyspark import TaskContext
        out = []
        for seg in rows:
            args = ["ingest", "--corpus", corpus, "--no-index", "--progress", "none", "--model", model,
                    "--source-range", f"{seg['start']}:{seg['end']}"] + extra + [seg["source"]]
            ctx = TaskContext.get()
            if kill_first and index == 0 and ctx is not None and ctx.attemptNumber() == 0:
                p = subprocess.Popen([lh.binary()] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(kill_first)
                p.send_signal(signal.SIGKILL)
                p.wait()
                raise RuntimeError("test hook: first attempt killed mid-ingest (kill -9); Spark retries the task")
            out += lh.json_lines(lh.run(args))
        return out
    return task


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--segment-tokens", type=int)
    ap.add_argument("--master", default=None, help="e.g. local[2,4] (2 cores, 4 attempts per task)")
    ap.add_argument("--ingest-arg", action="append", default=[], help="extra ingest option, repeatable")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    corpus = os.path.abspath(a.corpus)
    files = [os.path.abspath(f) for f in a.files]
    plan_args = ["corpus", "plan", "--model", a.model] + (["--segment-tokens", str(a.segment_tokens)] if a.segment_tokens else [])
    plan = lh.json_lines(lh.run(plan_args + files))
    spark = lh.spark_session("longheads-ingest-corpus", a.master)
    sc = spark.sparkContext
    kill_first = float(os.environ.get("LONGHEADS_SPARK_KILL_FIRST", "0"))
    t0 = time.time()
    done = sc.parallelize(plan, len(plan)).mapPartitionsWithIndex(ingest_task(corpus, a.model, a.ingest_arg, kill_first)).collect()
    seconds = time.time() - t0
    summary = json.loads(lh.run(["corpus", "index", corpus, "--model", a.model]))
    summary.update({"segments_ingested": len(done), "tokens_ingested": sum(d["tokens"] for d in done),
                    "ingest_seconds": round(seconds, 3), "parallelism": sc.defaultParallelism})
    print(json.dumps(summary, sort_keys=True))
    spark.stop()


if __name__ == "__main__":
    main()
