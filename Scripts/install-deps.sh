#!/usr/bin/env bash
# Installs the system packages longheads needs on Debian (run as root, or with sudo available).
set -euo pipefail
need=()
dpkg -s liblz4-dev >/dev/null 2>&1 || need+=(liblz4-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# The Spark test (Scripts/spark-test.sh) needs Java 17 and a Python venv for pyspark.
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
