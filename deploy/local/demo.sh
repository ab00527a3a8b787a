#!/usr/bin/env bash
# The operator at work, on a local control plane and Nacos (see tests/testbed.sh):
#   starts the testbed, installs the CRD, runs the operator, deploys a demo app whose pods register in
#   Nacos (over gRPC, from live client processes), deletes one pod, and shows what happened.
# The testbed keeps running afterwards; stop everything with: tests/testbed.sh down
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting the local testbed (the first run builds Kubernetes and rnacos: long)"
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

say "Building nacos-reconciler"
cargo build --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/nacos-reconciler"

say "Installing the NacosBinding CRD"
kubectl apply -f crds/ >/dev/null
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

say "Each pod's instance registers in Nacos over gRPC (a live client process per pod)"
service=demo-orders
for ip in $(kubectl -n demo get pods -l app=orders -o jsonpath='{.items[*].status.podIP}'); do
  "$NACOS_PYTHON" tests/clients/nacos_client.py --server "${RNACOS_ADDR#http://}" --service "$service" \
    --instances "$ip:8080" --mode grpc >"$TESTBED_STATE/logs/demo-client-$ip.log" 2>&1 &
  echo $! >"$TESTBED_STATE/extra-pids/demo-client-$ip"
done
nacos_list() {
  curl -s "$RNACOS_ADDR/nacos/v1/ns/instance/list?serviceName=$service&healthyOnly=false" |
    python3 -c 'import json,sys; [print("   ", h["ip"], h["port"], "enabled" if h["enabled"] else "disabled") for h in json.load(sys.stdin)["hosts"]]'
}
for _ in $(seq 1 30); do
  [ "$(nacos_list | wc -l)" -ge 3 ] && break
  sleep 1
done

say "Starting the operator (log: $TESTBED_STATE/logs/demo-operator.log)"
"$bin" run --kubeconfig "$KUBECONFIG" --namespaces demo --metrics-addr 127.0.0.1:0 \
  >"$TESTBED_STATE/logs/demo-operator.log" 2>&1 &
echo $! >"$TESTBED_STATE/extra-pids/demo-operator"

say "Creating NacosBinding demo/orders"
cat <<YAML | tee /dev/stderr | kubectl apply -f - >/dev/null
apiVersion: nacos-reconciler.io/v1alpha1
kind: NacosBinding
metadata: {name: orders, namespace: demo}
spec:
  nacos: {serverAddr: ["$RNACOS_ADDR"]}
  services: [{name: $service}]
  pods: {selector: {matchLabels: {app: orders}}}
  policy: {gracePeriodSeconds: 5}
YAML
for _ in $(seq 1 30); do
  [ "$(kubectl -n demo get nb orders -o jsonpath='{.status.instances.live}')" = "3" ] && break
  sleep 1
done

say "Before: Nacos lists"
nacos_list
kubectl -n demo get nb

# Scale down rather than delete: a deleted pod's replacement may get the same IP from KWOK, and an
# address held by a Ready pod of the app is rightly kept.
before=$(kubectl -n demo get pods -l app=orders -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{"\n"}{end}')
say "Scaling demo/orders down to 2 pods; the removed pod's Nacos client stays connected"
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
echo "   pod $victim ($victim_ip) is gone"
for _ in $(seq 1 30); do
  nacos_list | grep -q "$victim_ip" || break
  sleep 1
done

say "After: Nacos lists"
nacos_list
kubectl -n demo get nb
say "Events of demo/orders"
kubectl -n demo get events --field-selector involvedObject.kind=NacosBinding \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
say "What the operator thinks now: nacos-reconciler plan -n demo orders"
"$bin" plan -n demo orders --kubeconfig "$KUBECONFIG"

cat <<MSG

Done. The testbed keeps running: export KUBECONFIG=$KUBECONFIG and explore
(kubectl -n demo describe nb orders). Stop everything with: tests/testbed.sh down
MSG
