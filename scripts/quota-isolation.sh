#!/usr/bin/env bash
#
#   scripts/quota-isolation.sh none no      # the quiet tenant alone
#   scripts/quota-isolation.sh none yes     # next to a noisy tenant without a quota
#   scripts/quota-isolation.sh 20000 yes    # next to the noisy tenant offering 10x its quota
#
# SQLite sink; the noisy tenant offers 200,000 records/s (40 agents x 50
# batches/s x 100 records), the quiet one 5,000. Loopback ports 17900, 19900.
# Quota isolation: the quiet tenant's ack latency alone, next to a noisy
# tenant offering 10x its quota, and next to the same noisy tenant without a quota.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=target/release   # cargo build --release -p awp-gateway -p awp-agent-sim
quota=${1:?quota records/s or none}
noisy=${2:-yes}
dir=$(mktemp -d)
q=""
[ "$quota" != none ] && q="records_per_second = $quota"
cat > $dir/g.toml <<TOML
[server]
listen = ["127.0.0.1:17900"]
admin_listen = "127.0.0.1:19900"
[sink]
data_dir = "$dir/data"
[[tenants]]
id = "quiet"
secrets = ["quiet-secret-0123456789"]
[[tenants]]
id = "noisy"
secrets = ["noisy-secret-0123456789"]
$q
TOML
$bin/gateway --config $dir/g.toml > $dir/gw.log 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; pkill -f "tenant noisy" 2>/dev/null' EXIT
sleep 1
if [ "$noisy" = yes ]; then
  $bin/agent-sim run --gateway 127.0.0.1:17900 --tenant noisy --secret noisy-secret-0123456789 --agents 40 --rate 50 --records 100 --window 8 --duration 25 --device-prefix n- --sources 4 --quiet --out $dir/noisy > $dir/noisy.log 2>&1 &
  sleep 3
fi
$bin/agent-sim run --gateway 127.0.0.1:17900 --tenant quiet --secret quiet-secret-0123456789 --agents 20 --rate 5 --records 50 --window 4 --duration 20 --device-prefix q- --quiet --out $dir/quiet > $dir/quiet.log 2>&1
echo "quota=$quota noisy=$noisy"
grep -E "records acked / s|^    ack " $dir/quiet.log | sed 's/^/  quiet: /'
if [ "$noisy" = yes ]; then wait %2 2>/dev/null; grep -E "records acked / s|acks by status" $dir/noisy.log | sed 's/^/  noisy: /'; fi
curl -s 127.0.0.1:19900/metrics | grep "^awp_quota_exceeded_total" | sed 's/^/  /'
kill $gw; wait $gw
