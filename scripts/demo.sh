#!/usr/bin/env bash
# demo.sh — megha's main path on one machine, no flags needed.
#
# Until `megha demo` exists (it arrives with the trainer and market issues),
# this starts a local one-node coordinator and two worker agents with
# emulated GPUs, runs a user command across both (logs, status), submits the
# example training job (which waits: the built-in trainer is the next
# issue), shows a refused spec, and stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/megha}
SPEC=${SPEC:-examples/train-tiny.yaml}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/megha-demo.XXXXXX")
COORD_PID=""
WORKER_PIDS=""
cleanup() {
  for p in $WORKER_PIDS $COORD_PID; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
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

step "Starting two worker agents with emulated GPUs (this machine has no NVIDIA driver)"
for gpu in H100x1 A100-80GBx1; do
  "$BIN" worker --emulate-gpu "$gpu" --data-dir "$WORK/worker-$gpu" --log-level warn 2>"$WORK/worker-$gpu.log" &
  WORKER_PIDS="$WORKER_PIDS $!"
done
for _ in $(seq 1 200); do
  [ "$("$BIN" workers -o json | grep -c '"id"')" -ge 2 ] && break
  sleep 0.05
done

step "megha workers"
"$BIN" workers

step "megha submit examples/hello-workers.yaml   (your own command, on both workers)"
OUT=$("$BIN" submit examples/hello-workers.yaml)
echo "$OUT"
HELLO=$(echo "$OUT" | sed -nE 's/^Submitted job ([^ ]+).*/\1/p')
"$BIN" status --watch "$HELLO"

step "megha status $HELLO"
"$BIN" status "$HELLO"

step "megha logs --rank 1 $HELLO"
"$BIN" logs --rank 1 "$HELLO"

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

step "megha cancel $JOB   (the built-in trainer is the next issue: it would wait)"
"$BIN" cancel "$JOB" --reason "demo finished"

echo
echo "Done. The built-in trainer, the market and checkpoints arrive with the next"
echo "issues; see the README's roadmap."
