#!/usr/bin/env bash
# The main job on the default model: builds longheads (release) and answers a question about a document.
# The model is fetched on first use. Usage: Scripts/demo.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
Scripts/install-deps.sh
swift build -c release --product longheads >&2
prompt=${1:-"In one sentence, what is a lighthouse for?"}
.build/release/longheads generate --chat --max-tokens 64 --verbose --prompt "$prompt"
