#!/usr/bin/env bash
# demo.sh — megha's main path on one machine, no flags needed.
#
# Until `megha demo` exists (issue 7), this starts a one-node coordinator
# with the embedded GPU market, submits a DiLoCo training job of the
# built-in tiny transformer that leases three workers of mixed emulated GPUs
# from three providers (each a real `megha worker` process the market
# starts), fails one provider in the middle (training goes on with the
# other two while a replacement is leased, restores the latest checkpoint
# and joins), and shows rounds, loss, traffic, leases, spend and the
# checkpoints (verified, and exported as safetensors). Then it runs
# a user command on leased workers, shows a refused spec, and stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/megha}
SPEC=${SPEC:-examples/diloco-demo.yaml}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/megha-demo.XXXXXX")
COORD_PID=""
cleanup() {
  if [ -n "$COORD_PID" ] && kill -0 "$COORD_PID" 2>/dev/null; then
    kill -TERM "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
  fi
  # Workers the market started stop with their leases; any left are ours.
  pkill -TERM -f "$WORK/n1/market-workers" 2>/dev/null || true
  if [ "${KEEP:-}" = "" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting a one-node coordinator with the embedded GPU market (data in $WORK)"
"$BIN" coordinator --id n1 --data-dir "$WORK/n1" \
  --raft-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 \
  --market embedded --market-block-time 1s --bid-window 1s \
  --checkpoint-store "file://$WORK/checkpoints" \
  --ready-file "$WORK/ready.json" --log-level warn 2>"$WORK/coordinator.log" &
COORD_PID=$!
for _ in $(seq 1 200); do
  [ -s "$WORK/ready.json" ] && break
  kill -0 "$COORD_PID" 2>/dev/null || { cat "$WORK/coordinator.log"; exit 1; }
  sleep 0.05
done
[ -s "$WORK/ready.json" ] || { echo "coordinator did not start; log:"; cat "$WORK/coordinator.log"; exit 1; }
ADDR=$(sed -E 's/.*"grpc_addr":"([^"]+)".*/\1/' "$WORK/ready.json")
export MEGHA_COORDINATOR="$ADDR" MEGHA_MARKET="$ADDR" MEGHA_TOKEN_FILE="$WORK/n1/admin.token"
echo "coordinator and market serving on $ADDR (pid $COORD_PID); 1 block per second"

step "megha market providers   (a simulated Akash-style market: this machine has no GPUs, every GPU is emulated)"
"$BIN" market providers

step "megha submit $SPEC   (3 workers, spread over providers, ≤ \$2.50/GPU-hour, budget \$10; DiLoCo H=20, int8)"
OUT=$("$BIN" submit "$SPEC")
echo "$OUT"
JOB=$(echo "$OUT" | sed -nE 's/^Submitted job ([^ ]+).*/\1/p')

committed() { "$BIN" status "$JOB" -o json | sed -nE 's/.*"committed": *"?([0-9]+)"?.*/\1/p' | head -1; }
step "The coordinator orders, picks bids, and the market starts a worker per lease; training begins"
for _ in $(seq 1 1200); do
  r=$(committed); [ "${r:-0}" -ge 3 ] && break
  sleep 0.1
done
"$BIN" leases "$JOB"

VICTIM=$("$BIN" leases "$JOB" -o json | sed -nE 's/.*"provider_name": *"([^"]+)".*/\1/p' | head -1)
step "megha market fail $VICTIM   (a provider vanishes after round ${r:-?}: its lease closes, its worker dies, the round goes on without it, a replacement is leased and restores the latest checkpoint)"
"$BIN" market fail "$VICTIM"
restored() { "$BIN" logs --rank "$1" "$JOB" 2>/dev/null | grep -q "restored the checkpoint"; }
REPL=""
ended() { "$BIN" status "$JOB" -o json | grep -Eq '"state": *"JOB_STATE_(SUCCEEDED|FAILED|CANCELLED)"'; }
for _ in $(seq 1 300); do
  for rank in 0 1 2; do restored "$rank" && REPL=$rank; done
  [ -n "$REPL" ] && break
  ended && break
  sleep 0.2
done

if [ -n "$REPL" ]; then
  step "megha logs --rank $REPL $JOB   (the replacement's trainer: it restored the checkpoint, verified, and joined)"
  "$BIN" logs --rank "$REPL" "$JOB" | head -n 6
else
  step "no replacement restored before the job ended; training went on with the survivors"
fi

step "megha status --watch $JOB"
"$BIN" status --watch "$JOB"

step "megha status $JOB"
"$BIN" status "$JOB"


step "megha checkpoints $JOB   (content-addressed chunks + a manifest per round, in $WORK/checkpoints)"
"$BIN" checkpoints "$JOB"
step "megha checkpoints verify $JOB   (every chunk re-read and re-hashed)"
"$BIN" checkpoints verify "$JOB"
step "megha export $JOB --out model.safetensors"
"$BIN" export "$JOB" --out "$WORK/model.safetensors"

step "megha report $JOB   (loss curve, tokens, bytes, GPU-hours by model, spend, each recovery's timeline)"
"$BIN" report "$JOB" --out "$WORK/report"

step "megha leases $JOB   (closed once the final checkpoint was recorded; unspent escrow returned)"
"$BIN" leases "$JOB"

step "megha submit examples/hello-workers.yaml   (your own command, on two more leased workers)"
OUT=$("$BIN" submit examples/hello-workers.yaml)
echo "$OUT"
HELLO=$(echo "$OUT" | sed -nE 's/^Submitted job ([^ ]+).*/\1/p')
"$BIN" status --watch "$HELLO"
"$BIN" leases "$HELLO"

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
echo "Done. Sharding with exactly-once data, \`megha demo\` and serving arrive"
echo "with the next issues; see the README's roadmap."
