#!/usr/bin/env bash
# demo.sh — megha's main path on one machine, no flags needed.
#
# Until `megha demo` exists (it arrives with the worker, trainer and market
# issues), this starts a local one-node coordinator, submits the example
# training job, shows it through the CLI, cancels it, and stops. Nothing
# trains yet: the job waits in `pending` because no market or workers exist.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/megha}
SPEC=${SPEC:-examples/train-tiny.yaml}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/megha-demo.XXXXXX")
COORD_PID=""
cleanup() {
  if [ -n "$COORD_PID" ] && kill -0 "$COORD_PID" 2>/dev/null; then
    kill -TERM "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
  fi
  if [ "${KEEP:-}" = "" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting a one-node coordinator (data in $WORK)"
"$BIN" coordinator --id n1 --data-dir "$WORK/n1" \
  --raft-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 \
  --ready-file "$WORK/ready.json" --log-level warn 2>"$WORK/coordinator.log" &
COORD_PID=$!
for _ in $(seq 1 200); do
  [ -s "$WORK/ready.json" ] && break
  kill -0 "$COORD_PID" 2>/dev/null || { cat "$WORK/coordinator.log"; exit 1; }
  sleep 0.05
done
[ -s "$WORK/ready.json" ] || { echo "coordinator did not start; log:"; cat "$WORK/coordinator.log"; exit 1; }
ADDR=$(sed -E 's/.*"grpc_addr":"([^"]+)".*/\1/' "$WORK/ready.json")
export MEGHA_COORDINATOR="$ADDR" MEGHA_TOKEN_FILE="$WORK/n1/admin.token"
echo "coordinator serving on $ADDR (pid $COORD_PID)"

step "megha cluster members"
"$BIN" cluster members

step "megha submit --dry-run $SPEC   (the spec with defaults filled)"
"$BIN" submit --dry-run "$SPEC"

step "megha submit $SPEC"
OUT=$("$BIN" submit "$SPEC")
echo "$OUT"
JOB=$(echo "$OUT" | sed -nE 's/^Submitted job ([^ ]+).*/\1/p')

step "megha jobs"
"$BIN" jobs

step "megha status $JOB"
"$BIN" status "$JOB"

step "A spec with mistakes is refused before anything is sent"
cat > "$WORK/broken.yaml" <<'YAML'
name: Broken_Name
kind: train
model:
  builtin: transformer-tiny
resources:
  workerz: 3
  max_price_per_gpu_hour: cheap
YAML
"$BIN" submit "$WORK/broken.yaml" || true

step "megha cancel $JOB"
"$BIN" cancel "$JOB" --reason "demo finished"

echo
echo "Done. Training itself arrives with the worker, trainer and market issues;"
echo "see the README's roadmap."
