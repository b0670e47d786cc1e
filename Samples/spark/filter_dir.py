"""Spark job (c): `longheads filter` over a directory of text files with RDD.pipe, order and bytes kept.

    python3 filter_dir.py --input DIR --output DIR --model NAME --question "…" [--partitions N] \
        [--master local[2]] [--filter-arg=-v --filter-arg=--threshold --filter-arg=0.2 …]

Every line of every file becomes one element {"f": file, "n": line, "text": line without its "\n"}; the
elements are piped through `longheads filter --field text QUESTION …`, which asks about `text` exactly as
plain `longheads filter` asks about a line (the record without its terminator) and passes whole JSON
lines; the driver puts the passing lines back per file, in order, with their original bytes (a "\r", a
missing final newline). So OUTPUT/NAME equals `longheads filter QUESTION … < INPUT/NAME`, byte for byte.
Files must be UTF-8 (an invalid one is named with its byte offset). The text is collected on the driver:
for inputs larger than the driver's memory, write each partition's passing lines to storage instead.
"""
import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import longheads_spark as lh  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("--partitions", type=int, default=0)
    ap.add_argument("--master", default=None)
    ap.add_argument("--filter-arg", action="append", default=[])
    a = ap.parse_args()
    names = sorted(n for n in os.listdir(a.input) if os.path.isfile(os.path.join(a.input, n)))
    lines, elements = {}, []
    for name in names:
        data = open(os.path.join(a.input, name), "rb").read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            sys.exit(f"{os.path.join(a.input, name)}: invalid UTF-8 at byte offset {e.start}")
        parts = data.split(b"\n")
        # Each line with its terminator (the last one may have none).
        raw = [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        lines[name] = raw
        for n, r in enumerate(raw):
            text = r[:-1] if r.endswith(b"\n") else r
            elements.append(json.dumps({"f": name, "n": n, "text": text.decode("utf-8")}, ensure_ascii=False))
    spark = lh.spark_session("longheads-filter-dir", a.master)
    sc = spark.sparkContext
    parts = a.partitions or sc.defaultParallelism
    cmd = shlex.join([lh.binary(), "filter", "--model", a.model, "--field", "text", a.question] + a.filter_arg)
    env = {k: v for k, v in os.environ.items() if k.startswith("LONGHEADS_") or k in ("HOME", "PATH", "TMPDIR")}
    passed = sc.parallelize(elements, max(1, min(parts, len(elements)))).pipe(cmd, env=env, checkCode=True).collect()
    keep = {}
    for line in passed:
        o = json.loads(line)
        keep.setdefault(o["f"], set()).add(o["n"])
    os.makedirs(a.output, exist_ok=True)
    for name in names:
        with open(os.path.join(a.output, name), "wb") as f:
            for n, r in enumerate(lines[name]):
                if n in keep.get(name, ()):
                    f.write(r)
    print(json.dumps({"files": len(names), "lines": len(elements), "passed": len(passed)}))
    spark.stop()


if __name__ == "__main__":
    main()
