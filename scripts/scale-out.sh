#!/usr/bin/env bash
# Scale-out, end to end: two gateways behind HAProxy (TCP mode, PROXY
# protocol v2 to the gateways), both writing to one dynalite, agent-sim
# through HAProxy. Two runs, each ending with agent-sim's verify against the
# table (every acknowledged record stored, with the right content):
#
#   1. one gateway is killed with SIGKILL mid-run and restarted;
#   2. a rolling restart: SIGTERM each gateway in turn, restart it, wait
#      until it is ready, then the next.
#
#   scripts/scale-out.sh            # about 2 minutes after the release build
#
# Loopback only (127.0.0.1, ports 17700-17702, 19401-19402, 18000). Needs
# haproxy (installed here with apt-get if missing) and dynalite (npm).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

agents=${AGENTS:-200}
seconds=${SECONDS_PER_RUN:-24}

step() { printf '\n=== %s\n' "$*"; }

if ! command -v haproxy >/dev/null; then
    step "installing haproxy"
    apt-get update -qq && apt-get install -y -qq haproxy >/dev/null
fi
scripts/dynalite.sh install
step "release build"
cargo build --release --locked -p awp-gateway -p awp-agent-sim
gateway=target/release/gateway
sim=target/release/agent-sim

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "logs and reports: $work"
}
trap cleanup EXIT

secret=scale-out-secret-0123456789
cat >"$work/gateway.toml" <<EOF
[server]
proxy_protocol = true
proxy_protocol_trusted = ["127.0.0.0/8"]
drain_timeout_ms = 10000
[sink]
kind = "dynamodb"
[[tenants]]
id = "acme"
secrets = ["$secret"]
[tenants.dynamodb]
table = "awp-scale-out"
region = "us-east-1"
endpoint = "http://127.0.0.1:18000"
access_key_id = "local"
secret_access_key = "local"
EOF

cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch
frontend awp
    bind 127.0.0.1:17700
    default_backend gateways
backend gateways
    balance roundrobin
    server g1 127.0.0.1:17701 send-proxy-v2 check check-send-proxy inter 300 fall 2 rise 2
    server g2 127.0.0.1:17702 send-proxy-v2 check check-send-proxy inter 300 fall 2 rise 2
EOF

step "dynalite, the table, HAProxy"
node tools/dynalite/serve.js 18000 >"$work/dynalite.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18000 && break; sleep 0.1; done
$gateway --config "$work/gateway.toml" tables create
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
sleep 0.5
kill -0 $! 2>/dev/null || { cat "$work/haproxy.log"; echo "haproxy did not start" >&2; exit 1; }

declare -A gw_pid
start_gateway() { # N
    local n=$1
    $gateway --config "$work/gateway.toml" --listen "127.0.0.1:1770$n" --admin-listen "127.0.0.1:1940$n" \
        >>"$work/gateway$n.log" 2>&1 &
    gw_pid[$n]=$!
    pids+=($!)
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:1940$n/readyz")" = 200 ] && return 0
        sleep 0.1
    done
    echo "gateway $n did not become ready" >&2
    exit 1
}
stop_gateway() { # N SIGNAL
    kill "-$2" "${gw_pid[$1]}"
    wait "${gw_pid[$1]}" || true
}
metric() { # N NAME
    curl -s "http://127.0.0.1:1940$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

start_gateway 1
start_gateway 2

# A run passes when agent-sim's verify is OK and records were acked at all.
acked() { # NAME
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["records_acked"])' "$work/report-$1/report.json"
}

run_sim() { # NAME
    $sim run --gateway 127.0.0.1:17700 --tenant acme --secret "$secret" --agents "$agents" \
        --duration "$seconds" --rate 2 --records 10 --window 4 --device-prefix "$1-" --quiet \
        --out "$work/report-$1" --verify-dynamodb awp-scale-out --dynamodb-endpoint http://127.0.0.1:18000 \
        >"$work/sim-$1.log" 2>&1
}

step "run 1: gateway 1 killed (SIGKILL) mid-run and restarted"
run_sim kill &
sim_pid=$!
sleep $((seconds / 3))
echo "gateway 1 held $(metric 1 awp_connections) connections, gateway 2 $(metric 2 awp_connections)"
stop_gateway 1 KILL
echo "gateway 1 killed"
sleep 2
start_gateway 1
echo "gateway 1 restarted"
if wait $sim_pid && [ "$(acked kill)" -gt 0 ]; then verdict=passed; else verdict=FAILED; fi
grep -E "verify|acked|resends|connects|errors" "$work/sim-kill.log" | head -8
echo "run 1: $verdict"
[ $verdict = passed ]

step "run 2: rolling restart (SIGTERM each gateway in turn)"
run_sim rolling &
sim_pid=$!
sleep $((seconds / 4))
for n in 1 2; do
    stop_gateway $n TERM
    echo "gateway $n drained and stopped"
    start_gateway $n
    echo "gateway $n restarted and ready"
    sleep $((seconds / 4))
done
if wait $sim_pid && [ "$(acked rolling)" -gt 0 ]; then verdict=passed; else verdict=FAILED; fi
grep -E "verify|acked|resends|connects|errors" "$work/sim-rolling.log" | head -8
echo "run 2: $verdict"
[ $verdict = passed ]
echo "both gateways served: $(metric 1 awp_connections_total) and $(metric 2 awp_connections_total) connections since their restart"
