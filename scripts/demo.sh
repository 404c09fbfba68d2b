#!/usr/bin/env bash
# demo.sh — megha's main path on one machine, no flags needed.
#
# Until `megha demo` exists (it arrives with the market and checkpoint
# issues), this starts a local one-node coordinator and three worker agents
# with emulated GPUs of different speeds, trains the built-in tiny
# transformer on Go source with DiLoCo across them, kills one worker in the
# middle (training goes on with the other two), shows the rounds, the loss
# and the traffic, runs a user command across the survivors, shows a
# refused spec, and stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/megha}
SPEC=${SPEC:-examples/diloco-demo.yaml}
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

step "Starting three worker agents with emulated GPUs (this machine has no NVIDIA driver)"
echo "An emulated GPU runs at its catalog speed relative to an H100: the A100 about 1/3, the RTX 4090 about 1/6."
GPUS="H100-SXM A100-80GB RTX4090"
for gpu in $GPUS; do
  "$BIN" worker --emulate-gpu "$gpu" --data-dir "$WORK/worker-$gpu" --log-level warn 2>"$WORK/worker-$gpu.log" &
  WORKER_PIDS="$WORKER_PIDS $!"
  eval "PID_$(echo "$gpu" | tr -c 'A-Za-z0-9\n' _)=$!"
done
for _ in $(seq 1 200); do
  [ "$("$BIN" workers -o json | grep -c '"id"')" -ge 3 ] && break
  sleep 0.05
done

step "megha workers"
"$BIN" workers

step "megha submit $SPEC   (DiLoCo, H=20, int8 all-reduce, 8 rounds)"
OUT=$("$BIN" submit "$SPEC")
echo "$OUT"
JOB=$(echo "$OUT" | sed -nE 's/^Submitted job ([^ ]+).*/\1/p')

round() { "$BIN" status "$JOB" -o json | sed -nE 's/.*"committed": *"?([0-9]+)"?.*/\1/p' | head -1; }
step "Training; after round 3 the RTX 4090 worker is killed (SIGKILL): the round in flight is retried without it"
for _ in $(seq 1 1200); do
  r=$(round); [ "${r:-0}" -ge 3 ] && break
  sleep 0.1
done
echo "$(date +%T)  round ${r:-?} committed: kill -9 the RTX4090 worker (pid $PID_RTX4090)"
{ kill -KILL "$PID_RTX4090"; wait "$PID_RTX4090"; } 2>/dev/null || true
"$BIN" status --watch "$JOB"

step "megha status $JOB"
"$BIN" status "$JOB"

step "megha logs $JOB   (the trainer's own account, from a surviving worker)"
for r in 1 2 0; do
  if "$BIN" logs --rank "$r" "$JOB" >"$WORK/train.log" 2>/dev/null && [ -s "$WORK/train.log" ]; then
    head -n 4 "$WORK/train.log"; echo "..."; tail -n 4 "$WORK/train.log"
    break
  fi
done

step "megha submit examples/hello-workers.yaml   (your own command, on the surviving workers)"
OUT=$("$BIN" submit examples/hello-workers.yaml)
echo "$OUT"
HELLO=$(echo "$OUT" | sed -nE 's/^Submitted job ([^ ]+).*/\1/p')
"$BIN" status --watch "$HELLO"
"$BIN" logs --rank 1 "$HELLO"

step "A spec with mistakes is refused before anything is sent"
cat > "$WORK/broken.yaml" <<'YAML'
name: Broken_Name
kind: train
model:
  builtin: transformer-tiny
resources:
  workerz: 3
  max_price_per_gpu_hour: cheap
sync:
  inner_steps: 0
YAML
"$BIN" submit "$WORK/broken.yaml" || true

echo
echo "Done. The GPU market, checkpoints (so a lost worker is replaced and"
echo "restored) and serving arrive with the next issues; see the README's roadmap."
