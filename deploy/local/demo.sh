#!/usr/bin/env bash
# The operator at work, on a local control plane and Alibaba Nacos 2.5.1 (see tests/testbed.sh):
#   starts the testbed, installs the CRD, runs the operator, deploys a demo app whose pods register in
#   Nacos with the official Java SDK (over gRPC, one connection per pod), scales it down while the
#   removed pod's process stays connected -- the case Nacos itself never cleans up -- and shows what
#   happened: the DELETE Nacos answers `ok` and ignores, the instance disabled instead, a consumer
#   on the Java SDK no longer getting it.
# The testbed keeps running afterwards; stop everything with: tests/testbed.sh down
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting the local testbed (the first run builds Kubernetes, KWOK, Nacos and rnacos: long)"
envfile=$(mktemp)
tests/testbed.sh up >"$envfile"
# shellcheck disable=SC1090
source "$envfile"
rm -f "$envfile"
kubectl() { "$KUBECTL" "$@"; }
mkdir -p "$TESTBED_STATE/extra-pids"
# A previous demo's operator and clients go first (their gRPC connections take their instances along).
for f in "$TESTBED_STATE"/extra-pids/demo-*; do
  [ -f "$f" ] || continue
  kill "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
done
nacos=$NACOS_V2_ADDR
service=demo-orders-$(date +%s)

say "Building nacos-reconciler"
cargo build --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/nacos-reconciler"

say "Installing the NacosBinding CRD"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/nacosbindings.nacos-reconciler.io --timeout=30s >/dev/null

say "Deploying demo/orders (3 pods on KWOK nodes)"
# A fresh namespace, so Events of an earlier run do not mix in.
kubectl delete namespace demo --ignore-not-found --wait=true --timeout=60s >/dev/null
kubectl create namespace demo >/dev/null
kubectl -n demo create deployment orders --image=orders:1 --replicas=3 --port=8080 >/dev/null
for _ in $(seq 1 60); do
  ready=$(kubectl -n demo get pods -l app=orders -o jsonpath='{range .items[*]}{.status.podIP}{" "}{end}' | wc -w)
  [ "$ready" -ge 3 ] && break
  sleep 1
done
kubectl -n demo wait --for=condition=Ready pod -l app=orders --timeout=60s >/dev/null
kubectl -n demo get pods -o wide

# The official Java SDK (nacos-client 2.5.1, built by the testbed), as applications run it.
java_app() {
  local name=$1; shift
  mkdir -p "$TESTBED_STATE/demo-$name"
  "$NACOS_JAVA" -Duser.home="$TESTBED_STATE/demo-$name" -Xmx96m \
    -cp "$NACOS_JAVA_APP_V2/lib/*:$NACOS_JAVA_APP_V2/classes" NacosApp "$@" \
    --server "${nacos#http://}" --service "$service" --username "$NACOS_USERNAME" --password "$NACOS_PASSWORD" \
    </dev/null >"$TESTBED_STATE/logs/demo-$name.out" 2>"$TESTBED_STATE/logs/demo-$name.log" &
  echo $! >"$TESTBED_STATE/extra-pids/demo-$name"
}
wait_line() { # FILE TEXT SECONDS
  for _ in $(seq 1 "$3"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 1; done
  echo "   (no '$2' in $1 after $3 s)"; return 1
}

say "Each pod's process registers its instance in Nacos 2.5.1 over gRPC (Java SDK, one connection per pod)"
addrs=$(kubectl -n demo get pods -l app=orders -o jsonpath='{range .items[*]}{.status.podIP}:8080,{end}')
java_app providers register --instances "${addrs%,}"
wait_line "$TESTBED_STATE/logs/demo-providers.out" READY 60
say "A consumer subscribes to $service with the Java SDK (as a calling service would)"
java_app consumer consume
wait_line "$TESTBED_STATE/logs/demo-consumer.out" READY 60

token=$(curl -s -X POST "$nacos/nacos/v1/auth/login" -d "username=$NACOS_USERNAME&password=$NACOS_PASSWORD" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
nacos_list() { # every instance, disabled ones included (the v2 catalog)
  curl -s -H "accessToken: $token" \
    "$nacos/nacos/v2/ns/catalog/instances?serviceName=DEFAULT_GROUP@@$service&pageNo=1&pageSize=100" |
    python3 -c 'import json,sys
for h in json.load(sys.stdin)["data"].get("instances", []):
    print("   ", h["ip"], h["port"], "enabled" if h["enabled"] else "DISABLED", "by " + h["metadata"].get("nacos-reconciler.io/disabled-by", "") if not h["enabled"] else "")'
}
consumer_gets() { grep '^PUSH' "$TESTBED_STATE/logs/demo-consumer.out" | tail -n 1 | sed 's/^PUSH /    /; s/,/ /g'; }

say "Starting the operator (log: $TESTBED_STATE/logs/demo-operator.log)"
"$bin" run --kubeconfig "$KUBECONFIG" --namespaces demo --metrics-addr 127.0.0.1:0 \
  >"$TESTBED_STATE/logs/demo-operator.log" 2>&1 &
echo $! >"$TESTBED_STATE/extra-pids/demo-operator"

say "Creating Secret demo/nacos-auth and NacosBinding demo/orders"
kubectl -n demo create secret generic nacos-auth \
  --from-literal=username="$NACOS_USERNAME" --from-literal=password="$NACOS_PASSWORD" >/dev/null
binding=$(cat <<YAML
apiVersion: nacos-reconciler.io/v1alpha1
kind: NacosBinding
metadata: {name: orders, namespace: demo}
spec:
  nacos:
    serverAddr: ["$nacos"]
    credentialsSecretRef: {name: nacos-auth}
  services: [{name: $service}]
  pods: {selector: {matchLabels: {app: orders}}}
  policy: {gracePeriodSeconds: 5}
YAML
)
# Printed from the variable: `tee /dev/stderr` would reopen a redirected log at offset 0.
printf '%s\n' "$binding"
printf '%s\n' "$binding" | kubectl apply -f - >/dev/null
for _ in $(seq 1 30); do
  [ "$(kubectl -n demo get nb orders -o jsonpath='{.status.instances.live}')" = "3" ] && break
  sleep 1
done

say "Before: Nacos lists"
nacos_list
echo "   the consumer gets:"
consumer_gets
kubectl -n demo get nb

# Scale down rather than delete: a deleted pod's replacement may get the same IP from KWOK, and an
# address held by a Ready pod of the app is rightly kept.
before=$(kubectl -n demo get pods -l app=orders -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{"\n"}{end}')
say "Scaling demo/orders down to 2 pods; the removed pod's process stays connected to Nacos"
kubectl -n demo scale deployment orders --replicas=2 >/dev/null
for _ in $(seq 1 30); do
  [ "$(kubectl -n demo get pods -l app=orders --no-headers 2>/dev/null | wc -l)" -eq 2 ] && break
  sleep 1
done
after=$(kubectl -n demo get pods -l app=orders -o jsonpath='{.items[*].metadata.name}')
victim_ip=""
while IFS='=' read -r name ip; do
  case " $after " in *" $name "*) ;; *) victim=$name victim_ip=$ip ;; esac
done <<<"$before"
echo "   pod $victim ($victim_ip) is gone; its gRPC connection to Nacos is still open"
for _ in $(seq 1 30); do
  consumer_gets | grep -q "$victim_ip" || break
  sleep 1
done

say "After: Nacos lists (the instance is still registered: its connection owns it)"
nacos_list
echo "   the consumer gets:"
consumer_gets
kubectl -n demo get nb
say "Events of demo/orders"
kubectl -n demo get events --field-selector involvedObject.kind=NacosBinding \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
say "What the operator thinks now: nacos-reconciler plan -n demo orders"
"$bin" plan -n demo orders --kubeconfig "$KUBECONFIG"

cat <<MSG

Done. Watch the instance in the Nacos console: $nacos/nacos/ (user $NACOS_USERNAME, password
$NACOS_PASSWORD), service $service. The testbed keeps running: export KUBECONFIG=$KUBECONFIG and
explore (kubectl -n demo describe nb orders). Stop everything with: tests/testbed.sh down
MSG
