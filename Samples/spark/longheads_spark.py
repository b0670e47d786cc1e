"""Helpers shared by the longheads Spark jobs (Samples/spark/README.md).

Every job runs the `longheads` binary as a subprocess of a Spark task: the binary must exist at the same
path on every executor (LONGHEADS_BIN, default `longheads` on PATH) and the corpus directory must be on a
file system all executors share. The model is named (--model) and must be cached on every executor
($LONGHEADS_HOME/models), or be a path to a GGUF file they can read.
"""
import json
import os
import shlex
import subprocess


def binary():
    """The longheads executable the tasks run."""
    return os.environ.get("LONGHEADS_BIN", "longheads")


def run(args, stdin=None):
    """Runs longheads with `args`; returns stdout (text). A non-zero exit raises with stderr attached, so
    that Spark fails the task (and retries it: every longheads step the jobs run is idempotent)."""
    p = subprocess.run([binary()] + args, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"longheads {shlex.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def spark_session(name, master):
    """A session whose Python workers run this interpreter and can import this module."""
    import sys
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    b = SparkSession.builder.appName(name)
    if master:
        b = b.master(master)
    # Python workers are reused; the work happens in the longheads subprocess anyway.
    spark = b.config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.addPyFile(os.path.abspath(__file__))
    return spark
