#!/usr/bin/env bash
# Record a few invocations, export the signed ledger with its components, and replay it offline.
set -euo pipefail
cd "$(dirname "$0")/../.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FEMTOCLAW_DATA_DIR="$work/data"
host() { cargo run --quiet --release -p femtoclaw-host -- "$@"; }

# Record.
host invoke hello greet --args '{"name":"CI"}'
host invoke textstats analyze --args '{"text":"to be or not to be","top":2}'
host invoke textstats digest --args '{"text":"abc","algorithm":"sha256"}'

# Export with components, and pin the key that signed it.
host log export --with-components "$work/golden.export"
key=$(host key show)
host log verify --key "$key" "$work/golden.export"

# Replay offline, from an empty data directory: the export alone is enough.
FEMTOCLAW_DATA_DIR="$work/empty" host replay "$work/golden.export" --key "$key"
