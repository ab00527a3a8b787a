#!/usr/bin/env bash
# The local testbed: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler), KWOK fake nodes, and real Nacos servers (rnacos), all on 127.0.0.1.
#
#   tests/testbed.sh up       build what is missing, start everything, print `export` lines
#   tests/testbed.sh env      print the `export` lines of the running testbed
#   tests/testbed.sh status   say what runs
#   tests/testbed.sh down     stop exactly what `up` started and remove its state
#   tests/testbed.sh restart-apiserver [SECONDS]   restart kube-apiserver alone (down SECONDS)
#
# Builds are cached outside the repository, keyed by version, under
# ${NACOS_RECONCILER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nacos-reconciler}.
# Runtime state (PIDs, logs, certificates, data) lives in ${TESTBED_STATE:-/tmp/nacos-reconciler-testbed}.
# TESTBED_WITHOUT="nacos-3.0.3 rnacos-auth" (any of the Nacos servers, by component name) leaves those
# out: their variables are not printed (a benchmark that needs neither keeps the machine for itself).
set -euo pipefail

K8S_VERSION=1.35.4
KWOK_VERSION=0.8.0
HELM_VERSION=3.19.5
RNACOS_VERSION=0.8.8
NACOS_SDK_PYTHON_VERSION=2.0.9
# Alibaba Nacos, built from the release sources in $NACOS_VENDOR (checked against its SHA256SUMS).
NACOS_VERSIONS=(2.5.1 3.0.3)
# The official Java SDK, from Maven Central, as applications use it: 2.x (gRPC) and 1.x (HTTP + beats),
# each with the slf4j it was built for.
JAVA_SDK_V2=2.5.1 JAVA_SDK_V2_SLF4J=2.0.17
JAVA_SDK_V1=1.4.8 JAVA_SDK_V1_SLF4J=1.7.36
KWOK_NODES=${KWOK_NODES:-3}
# The node lifecycle controller marks a node Ready=Unknown after this long without a Lease renewal.
NODE_MONITOR_GRACE=${NODE_MONITOR_GRACE:-20s}
# The controller-manager's client rate limit (Kubernetes' defaults); the scale benchmark raises it.
KCM_QPS=${TESTBED_KCM_QPS:-20}
KCM_BURST=${TESTBED_KCM_BURST:-30}
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
# KWOK nodes get InternalIPs $NODE_IP_PREFIX.1, .2, ...: addresses only, nothing listens there.
NODE_IP_PREFIX=10.245.0
NACOS_USER=nacos
NACOS_PASS=testbed-Passw0rd

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${NACOS_RECONCILER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nacos-reconciler}
STATE=${TESTBED_STATE:-/tmp/nacos-reconciler-testbed}
K8S_BIN=$CACHE/k8s-$K8S_VERSION/bin
KWOK_BIN=$CACHE/kwok-$KWOK_VERSION/bin
HELM_BIN=$CACHE/helm-$HELM_VERSION/bin
RNACOS_BIN=$CACHE/rnacos-$RNACOS_VERSION/bin
PYENV=$CACHE/nacos-sdk-python-$NACOS_SDK_PYTHON_VERSION
NACOS_VENDOR=${NACOS_VENDOR_DIR:-$(cd "$HERE/../.." && pwd)/shared/vendor/nacos}
# Local Maven repositories: the servers' build installs its own com.alibaba.nacos artifacts, which
# must never stand in for Maven Central's in the Java clients' repository.
M2_SERVER=$CACHE/m2-nacos-server
M2=$CACHE/m2

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "missing toolchain: '$1' is not on PATH ($2)"; }

# ---------------------------------------------------------------------------------------------- build

build_k8s() {
  [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$K8S_BIN/kube-controller-manager" ] && [ -x "$K8S_BIN/kube-scheduler" ] \
    && [ -x "$K8S_BIN/kubectl" ] && [ -x "$K8S_BIN/etcd" ] && return 0
  need go "install Go 1.25+"
  mkdir -p "$K8S_BIN"
  local logf="$CACHE/k8s-$K8S_VERSION/build.log" ld="" p minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld="$ld -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  log "building Kubernetes v$K8S_VERSION and etcd from Go modules (cold: 20-40 min on 2 cores); log: $logf"
  # The wrapper module sits in a scratch copy so the build never writes into the repository.
  local src="$CACHE/k8s-$K8S_VERSION/src"
  rm -rf "$src" && mkdir -p "$src" && cp -r "$HERE/testbed/go/k8s/." "$src/"
  (cd "$src" && go build -trimpath -ldflags "-s -w $ld" -o "$K8S_BIN/" ./cmd/...) >"$logf" 2>&1 \
    || die "Kubernetes build failed; read $logf"
}

build_kwok() {
  [ -x "$KWOK_BIN/kwok" ] && [ -s "$CACHE/kwok-$KWOK_VERSION/stages.yaml" ] && return 0
  need go "install Go 1.25+"
  local logf="$CACHE/kwok-$KWOK_VERSION/build.log" dir f
  log "building kwok v$KWOK_VERSION; log: $logf"
  mkdir -p "$KWOK_BIN"
  (cd /tmp && GOBIN="$KWOK_BIN" go install "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION") >"$logf" 2>&1 \
    || die "kwok build failed; read $logf"
  # kwok runs no lifecycle without stages: take the ones its module ships (no delays, Lease heartbeats).
  dir=$(cd /tmp && go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir/kustomize/stage" ] || die "kwok stages not found in the module cache ($dir)"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n'
    cat "$dir/kustomize/stage/$f"
    echo
  done >"$CACHE/kwok-$KWOK_VERSION/stages.yaml"
}

build_helm() {
  [ -x "$HELM_BIN/helm" ] && return 0
  need go "install Go 1.25+"
  log "building helm v$HELM_VERSION; log: $CACHE/helm-$HELM_VERSION/build.log"
  mkdir -p "$HELM_BIN"
  (cd /tmp && GOBIN="$HELM_BIN" go install "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION") \
    >"$CACHE/helm-$HELM_VERSION/build.log" 2>&1 || die "helm build failed; read $CACHE/helm-$HELM_VERSION/build.log"
}

build_rnacos() {
  [ -x "$RNACOS_BIN/rnacos" ] && return 0
  need cargo "install Rust with rustup"
  local logf="$CACHE/rnacos-$RNACOS_VERSION.build.log"
  log "building rnacos $RNACOS_VERSION from crates.io (cold: 10-20 min on 2 cores); log: $logf"
  mkdir -p "$CACHE"
  cargo install rnacos --version "$RNACOS_VERSION" --locked --root "$CACHE/rnacos-$RNACOS_VERSION" >"$logf" 2>&1 \
    || die "rnacos build failed; read $logf"
}

build_python_client() {
  [ -x "$PYENV/bin/python" ] && "$PYENV/bin/python" -c 'import v2.nacos' 2>/dev/null && return 0
  need python3 "install CPython 3.9+"
  local logf="$CACHE/nacos-sdk-python-$NACOS_SDK_PYTHON_VERSION.install.log"
  log "installing nacos-sdk-python $NACOS_SDK_PYTHON_VERSION into $PYENV; log: $logf"
  rm -rf "$PYENV"
  { python3 -m venv "$PYENV" && "$PYENV/bin/pip" install -q "nacos-sdk-python==$NACOS_SDK_PYTHON_VERSION"; } >"$logf" 2>&1 \
    || die "nacos-sdk-python install failed; read $logf"
}

# nacos_archive VERSION: the source archive of VERSION, after checking it against SHA256SUMS.
nacos_archive() {
  local v=$1 f sums want have
  f=$NACOS_VENDOR/nacos-$v-src.tar.gz sums=$NACOS_VENDOR/SHA256SUMS
  [ -f "$sums" ] || die "Alibaba Nacos sources: $sums is missing (set NACOS_VENDOR_DIR to the folder holding nacos-<version>-src.tar.gz and SHA256SUMS)"
  [ -f "$f" ] || die "Alibaba Nacos sources: $f is missing (set NACOS_VENDOR_DIR to the folder holding it)"
  want=$(awk -v n="nacos-$v-src.tar.gz" '$2 == n || $2 == "*"n {print $1}' "$sums")
  [ -n "$want" ] || die "Alibaba Nacos sources: $sums has no checksum for nacos-$v-src.tar.gz"
  have=$(sha256sum "$f" | cut -d' ' -f1)
  [ "$have" = "$want" ] || die "Alibaba Nacos sources: $f has SHA-256 $have, $sums says $want: not the release tag's sources"
  echo "$f $want"
}

# nacos_dist VERSION: the cached distribution folder (bin/, conf/, target/nacos-server.jar) of VERSION.
nacos_dist() {
  local v=$1 sum
  sum=$(awk -v n="nacos-$v-src.tar.gz" '$2 == n || $2 == "*"n {print $1}' "$NACOS_VENDOR/SHA256SUMS" 2>/dev/null)
  echo "$CACHE/nacos-server-$v-${sum:0:12}/nacos"
}

build_nacos_server() {
  local v=$1 archive sum dist work logf
  read -r archive sum < <(nacos_archive "$v") || exit 1
  [ -n "$archive" ] || exit 1
  dist=$(nacos_dist "$v")
  [ -s "$dist/target/nacos-server.jar" ] && return 0
  need mvn "install Maven 3.8+ and a JDK 17"
  need java "install a JDK 17"
  work=$CACHE/nacos-server-$v-${sum:0:12}.build
  logf=$CACHE/nacos-server-$v-${sum:0:12}.build.log
  log "building Alibaba Nacos $v from $archive with Maven (cold: 2-5 min on 2 cores); log: $logf"
  rm -rf "$work" "$(dirname "$dist")" && mkdir -p "$work"
  tar xzf "$archive" -C "$work" || die "cannot unpack $archive"
  (cd "$work/nacos-$v" && mvn -B -q -Dmaven.repo.local="$M2_SERVER" -Prelease-nacos -Dmaven.test.skip=true \
    -Drat.skip=true -Dcheckstyle.skip=true -Dpmd.skip=true -Dmaven.javadoc.skip=true -Djacoco.skip=true \
    -Dspotbugs.skip=true install) >"$logf" 2>&1 || die "Alibaba Nacos $v build failed; read $logf"
  local built=$work/nacos-$v/distribution/target/nacos-server-$v/nacos
  [ -s "$built/target/nacos-server.jar" ] || die "Alibaba Nacos $v: the build made no $built/target/nacos-server.jar; read $logf"
  mkdir -p "$(dirname "$dist")"
  mv "$built" "$dist"
  # Only the distribution is kept: the source tree and the artifacts the build installed go.
  rm -rf "$work" "$M2_SERVER/com/alibaba/nacos"
}

# java_client_dir SDK_VERSION: where NacosApp compiled against that SDK lives (lib/, classes/), keyed by
# the program's sources so an edit rebuilds it.
java_client_dir() {
  local key
  key=$(cat "$HERE/clients/java/NacosApp.java" "$HERE/clients/java/pom.xml" | sha256sum | cut -c1-12)
  echo "$CACHE/nacos-java-app-$1-$key"
}

build_java_client() {
  local v=$1 slf4j=$2 dir logf
  dir=$(java_client_dir "$v")
  [ -f "$dir/classes/NacosApp.class" ] && return 0
  need mvn "install Maven 3.8+ and a JDK 17"
  need javac "install a JDK 17"
  logf=$dir.build.log
  log "building the Java test client on nacos-client $v (Maven Central); log: $logf"
  # Builds of earlier sources of the program are of no use any more.
  rm -rf "$CACHE"/nacos-java-app-"$v"-* && mkdir -p "$dir/classes"
  {
    mvn -B -q -Dmaven.repo.local="$M2" -f "$HERE/clients/java/pom.xml" -Dnacos.client.version="$v" \
      -Dslf4j.version="$slf4j" dependency:copy-dependencies -DoutputDirectory="$dir/lib" &&
      javac -nowarn -cp "$dir/lib/*" -d "$dir/classes" "$HERE/clients/java/NacosApp.java"
  } >"$logf" 2>&1 || { rm -rf "$dir"; die "Java test client on nacos-client $v failed to build; read $logf"; }
}

build_java_clients() {
  build_java_client "$JAVA_SDK_V2" "$JAVA_SDK_V2_SLF4J"
  build_java_client "$JAVA_SDK_V1" "$JAVA_SDK_V1_SLF4J"
}

build_all() {
  mkdir -p "$CACHE"
  local parts=("$@") p v
  [ ${#parts[@]} -gt 0 ] || parts=(k8s kwok helm rnacos python-client nacos java-clients)
  # One build at a time per cache: a second `up` (another test binary, another checkout) waits for
  # the first, then finds the components built. The lock's descriptor is open in this subshell only:
  # the servers started afterwards must not inherit it (they would hold the lock for their lifetime).
  (
    flock -n 9 || { log "another build holds $CACHE/.build.lock; waiting for it"; flock 9; }
    for p in "${parts[@]}"; do
      case $p in
        k8s) build_k8s ;;
        kwok) build_kwok ;;
        helm) build_helm ;;
        rnacos) build_rnacos ;;
        python-client) build_python_client ;;
        nacos) for v in "${NACOS_VERSIONS[@]}"; do build_nacos_server "$v"; done ;;
        java-clients) build_java_clients ;;
        *) die "unknown part to build: $p (k8s kwok helm rnacos python-client nacos java-clients)" ;;
      esac
    done
  ) 9>"$CACHE/.build.lock" || exit 1
}

# ---------------------------------------------------------------------------------------------- run

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME CMD...: run CMD in the background, log to $STATE/logs/NAME.log, record its PID.
start() {
  local name=$1; shift
  "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name"
}

# answers NAME SECONDS CMD...: retry CMD until it succeeds (0); 1 when process NAME exits (or logs a
# Rust panic) first, 2 when time runs out.
answers() {
  local name=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [ -f "$STATE/pids/$name" ] && ! kill -0 "$(cat "$STATE/pids/$name")" 2>/dev/null; then
      return 1
    fi
    # A panicked thread (rnacos's Raft store) leaves the process up but never answering.
    if grep -qs "panicked at" "$STATE/logs/$name.log"; then
      return 1
    fi
    sleep 0.25
  done
  return 2
}
# wait_for NAME SECONDS CMD...: as answers, but fail naming the log to read.
wait_for() {
  local name=$1 secs=$2 rc=0
  answers "$@" || rc=$?
  case $rc in
    0) ;;
    1) die "$name exited during start-up; read $STATE/logs/$name.log" ;;
    *) die "$name did not answer within ${secs}s; read $STATE/logs/$name.log" ;;
  esac
}

is_running() { [ -f "$STATE/pids/$1" ] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null; }

gen_certs() {
  local d=$STATE/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=testbed-ca"
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    # rustls accepts only X.509 v3 certificates: every leaf gets an extension file.
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >san.ext
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >>san.ext
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile san.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=testbed-admin"
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 30 -extfile client.ext
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$STATE/logs/pki.log" 2>&1 || die "certificate generation failed; read $STATE/logs/pki.log"
}

write_kubeconfig() {
  local d=$STATE/pki
  cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster: {server: "https://127.0.0.1:$(cat "$STATE/ports/apiserver")", certificate-authority: "$d/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$d/admin.crt", client-key: "$d/admin.key"}
contexts:
- name: testbed
  context: {cluster: testbed, user: admin, namespace: default}
current-context: testbed
EOF
}

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

start_k8s() {
  local etcd_port etcd_peer api_port d=$STATE/pki
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  echo "$etcd_port" >"$STATE/ports/etcd"
  echo "$api_port" >"$STATE/ports/apiserver"
  start etcd "$K8S_BIN/etcd" --name testbed --data-dir "$STATE/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "testbed=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "" --log-level warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

  start_apiserver

  local kcm_port sched_port
  kcm_port=$(free_port); sched_port=$(free_port)
  echo "$kcm_port" >"$STATE/ports/kube-controller-manager"
  echo "$sched_port" >"$STATE/ports/kube-scheduler"
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$STATE/kubeconfig" \
    --authentication-kubeconfig "$STATE/kubeconfig" --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --cluster-signing-cert-file "$d/ca.crt" --cluster-signing-key-file "$d/ca.key" \
    --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --node-monitor-period 2s --node-monitor-grace-period "$NODE_MONITOR_GRACE" \
    --kube-api-qps "$KCM_QPS" --kube-api-burst "$KCM_BURST" \
    --controllers '*,-bootstrapsigner,-tokencleaner,-service-lb-controller,-persistentvolume-binder,-attachdetach'
  start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$STATE/kubeconfig" \
    --authentication-kubeconfig "$STATE/kubeconfig" --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false
  wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$kcm_port/healthz"
  wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$sched_port/healthz"
  # The service-account controller creates `default` in each namespace; Pods need it.
  wait_for kube-controller-manager 60 kubectl_ get serviceaccount default -n default
}

start_kwok() {
  local port i
  port=$(free_port)
  echo "$port" >"$STATE/ports/kwok"
  start kwok "$KWOK_BIN/kwok" --kubeconfig "$STATE/kubeconfig" --config "$CACHE/kwok-$KWOK_VERSION/stages.yaml" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr "$CLUSTER_CIDR" --node-lease-duration-seconds 10 --server-address "127.0.0.1:$port"
  for ((i = 0; i < KWOK_NODES; i++)); do
    kubectl_ apply -f - >>"$STATE/logs/kwok.log" 2>&1 <<EOF || die "creating node kwok-node-$i failed; read $STATE/logs/kwok.log"
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "32", memory: 256Gi, pods: "1000"}
EOF
    # Status is dropped on create; KWOK keeps an InternalIP it finds, so set one per node.
    kubectl_ patch node "kwok-node-$i" --subresource=status --type=merge -p "{\"status\":{\"addresses\":[
      {\"type\":\"InternalIP\",\"address\":\"$NODE_IP_PREFIX.$((i + 1))\"},
      {\"type\":\"Hostname\",\"address\":\"kwok-node-$i\"}]}}" >>"$STATE/logs/kwok.log" 2>&1 \
      || die "setting the address of node kwok-node-$i failed; read $STATE/logs/kwok.log"
  done
  wait_for kwok 60 kubectl_ wait --for=condition=Ready node --all --timeout=1s
  # KWOK 0.8 renders a node's first status from the node as it first saw it, without the addresses
  # set just above, and its patch then drops them (seen: a testbed node without an InternalIP for a
  # whole run). Once KWOK has initialised the nodes, set them again until they stay.
  local tries want have
  for ((i = 0; i < KWOK_NODES; i++)); do
    want="$NODE_IP_PREFIX.$((i + 1))"
    for tries in $(seq 1 20); do
      have=$(kubectl_ get node "kwok-node-$i" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
      [ "$have" = "$want" ] && [ "$tries" -gt 2 ] && break
      [ "$have" = "$want" ] || kubectl_ patch node "kwok-node-$i" --subresource=status --type=merge -p "{\"status\":{\"addresses\":[
        {\"type\":\"InternalIP\",\"address\":\"$want\"},{\"type\":\"Hostname\",\"address\":\"kwok-node-$i\"}]}}" >>"$STATE/logs/kwok.log" 2>&1
      sleep 0.5
    done
    [ "$have" = "$want" ] || die "node kwok-node-$i keeps losing its InternalIP $want; read $STATE/logs/kwok.log"
  done
}

# rnacos_takes_writes PORT AUTH: the login answers, and a Raft write takes. With auth the login
# needs the admin user, itself a Raft write at start-up; without, a namespace is created. A process
# whose Raft apply actor died answers the login all the same (without auth it hands out a token
# anyway) and every Raft write with `500 Mailbox has closed`.
rnacos_takes_writes() {
  curl -fsS -X POST "http://127.0.0.1:$1/nacos/v1/auth/login" -d "username=$NACOS_USER&password=$NACOS_PASS" || return 1
  [ "$2" = true ] && return 0
  [ "$(curl -fsS -X POST "http://127.0.0.1:$1/nacos/v1/console/namespaces" \
    -d 'customNamespaceId=testbed-probe&namespaceName=testbed-probe&namespaceDesc=start-up probe')" = true ]
}

start_rnacos() {
  local name=$1 auth=$2 port attempt
  # rnacos 0.8.8 now and then panics in its Raft store on a first start (an unwrap in
  # raftapply.rs's StateApplyManager, reached before its managers are set: about one start in six
  # here, once three in a row, five in a row while a build ran beside it) and stays up with every
  # Raft write failing: start afresh, up to twelve times (a panic is seen within seconds).
  for attempt in $(seq 12); do
    # rnacos serves gRPC on HTTP port + 1000: the Nacos port picker keeps that one free too.
    port=$(nacos_free_port)
    echo "$port" >"$STATE/ports/$name"
    rm -rf "${STATE:?}/$name" && mkdir -p "$STATE/$name"
    # Without auth, rnacos serves its console API on the HTTP port too: the one listing that shows
    # disabled instances (its open API hides them).
    start "$name" env RNACOS_HTTP_PORT="$port" RNACOS_GRPC_PORT=$((port + 1000)) RNACOS_HTTP_CONSOLE_PORT=0 \
      RNACOS_DATA_DIR="$STATE/$name" RNACOS_ENABLE_OPEN_API_AUTH="$auth" \
      RNACOS_ENABLE_NO_AUTH_CONSOLE="$([ "$auth" = true ] && echo false || echo true)" \
      RNACOS_INIT_ADMIN_USERNAME="$NACOS_USER" RNACOS_INIT_ADMIN_PASSWORD="$NACOS_PASS" \
      RNACOS_SDK_HOST=127.0.0.1 RNACOS_CONSOLE_HOST=127.0.0.1 RNACOS_ENV_FILE="$STATE/$name/.env" \
      RNACOS_RAFT_NODE_ADDR="127.0.0.1:$((port + 1000))" RUST_LOG=warn "$RNACOS_BIN/rnacos"
    answers "$name" 60 rnacos_takes_writes "$port" "$auth" && return 0
    kill -9 "$(cat "$STATE/pids/$name")" 2>/dev/null || true
    mv "$STATE/logs/$name.log" "$STATE/logs/$name.attempt-$attempt.log"
    log "$name did not start (attempt $attempt of 12); log: $STATE/logs/$name.attempt-$attempt.log"
  done
  die "$name did not start in twelve attempts; read $STATE/logs/$name.attempt-*.log"
}

# A base64 key of 32 bytes and a server identity: what Alibaba Nacos wants before it starts with auth on.
NACOS_TOKEN_SECRET=$(printf 'nacos-reconciler-testbed-token-secret-key!' | base64 -w0)

nacos_free_port() {
  # Nacos also listens on port + 1000 (SDK gRPC), + 1001 (cluster gRPC) and - 1000 (JRaft, even
  # standalone). Below the kernel's ephemeral range (32768 up), where an outgoing connection of any
  # process may take a port between this check and the server's bind.
  python3 -c '
import random, socket
while True:
    p = random.randrange(11000, 31000)
    try:
        for d in (0, 1000, 1001, -1000):
            socket.socket().bind(("127.0.0.1", p + d))
    except OSError:
        continue
    print(p)
    break'
}

# launch_nacos NAME VERSION: starts Alibaba Nacos VERSION standalone with auth on, its own state
# directory (nacos.home with conf/ and logs/) and HOME, bounded heap; returns without waiting.
launch_nacos() {
  local name=$1 v=$2 dist dir port major
  dist=$(nacos_dist "$v")
  [ -s "$dist/target/nacos-server.jar" ] || die "Alibaba Nacos $v is not built ($dist); run: tests/testbed.sh build nacos"
  dir=$STATE/$name major=${v%%.*}
  rm -rf "$dir" && mkdir -p "$dir/home" "$dir/logs" "$dir/tmp" && cp -r "$dist/conf" "$dir/conf"
  port=$(nacos_free_port)
  echo "$port" >"$STATE/ports/$name"
  {
    echo
    echo "# tests/testbed.sh: loopback, auth on"
    echo "nacos.inetutils.ip-address=127.0.0.1"
    echo "nacos.core.auth.enabled=true"
    echo "nacos.core.auth.plugin.nacos.token.secret.key=$NACOS_TOKEN_SECRET"
    echo "nacos.core.auth.server.identity.key=nacos-reconciler-testbed"
    echo "nacos.core.auth.server.identity.value=nacos-reconciler-testbed"
    if [ "$major" -ge 3 ]; then
      echo "nacos.server.main.port=$port"
      echo "nacos.console.port=$(free_port)"
      echo "nacos.ai.mcp.registry.port=$(free_port)"
    else
      echo "server.port=$port"
    fi
  } >>"$dir/conf/application.properties"
  sed -n 's/^nacos.console.port=//p' "$dir/conf/application.properties" | tail -n1 >"$STATE/ports/$name-console"
  # As bin/startup.sh -m standalone does, with a smaller heap: several servers share two cores and 24 GiB.
  # In its own directory: Derby and Tomcat write derby.log and logs/ into the working directory,
  # RocksDB its 14 MB native library into java.io.tmpdir at every start.
  cd "$dir"
  start "$name" env HOME="$dir/home" java -Xms256m -Xmx512m -XX:MaxMetaspaceSize=256m -XX:-OmitStackTraceInFastThrow \
    -Duser.home="$dir/home" -Djava.io.tmpdir="$dir/tmp" -Dnacos.standalone=true -Dnacos.home="$dir" -Dnacos.deployment.type=merged \
    -jar "$dist/target/nacos-server.jar" --spring.config.additional-location="file:$dir/conf/" \
    --logging.config="$dir/conf/nacos-logback.xml"
  cd - >/dev/null
}

# ready_nacos NAME VERSION: creates the admin user once Nacos answers, then waits until login works.
ready_nacos() {
  local name=$1 v=$2 base users login rc=0
  base=http://127.0.0.1:$(cat "$STATE/ports/$name")/nacos
  if [ "${v%%.*}" -ge 3 ]; then users=$base/v3/auth/user/admin login=$base/v3/auth/user/login
  else users=$base/v1/auth/users/admin login=$base/v1/auth/login; fi
  # From 2.4 there is no default user: the first admin is created once, while none exists.
  answers "$name" 180 curl -fsS -X POST "$users" -d "password=$NACOS_PASS" || rc=$?
  [ "$rc" = 0 ] && answers "$name" 60 curl -fsS -X POST "$login" -d "username=$NACOS_USER&password=$NACOS_PASS" || rc=$?
  [ "$rc" = 0 ] && return 0
  log "Alibaba Nacos $v ($name) did not become ready ($([ "$rc" = 1 ] && echo exited || echo 'no login')); the end of its logs:"
  tail -n 25 "$STATE/logs/$name.log" >&2 || true
  tail -n 25 "$STATE/$name/logs/nacos.log" >&2 2>/dev/null || true
  die "Alibaba Nacos $v did not start; read $STATE/logs/$name.log and $STATE/$name/logs/"
}

print_env() {
  [ -f "$STATE/kubeconfig" ] || die "no testbed runs (no $STATE/kubeconfig); run: tests/testbed.sh up"
  cat <<EOF
export TESTBED_STATE=$STATE
export KUBECONFIG=$STATE/kubeconfig
export TESTBED_K8S_VERSION=v$K8S_VERSION
export TESTBED_KWOK_NODES=$KWOK_NODES
export TESTBED_NODE_MONITOR_GRACE=$NODE_MONITOR_GRACE
export TESTBED_CLUSTER_CIDR=$CLUSTER_CIDR
export TESTBED_NODE_IP_PREFIX=$NODE_IP_PREFIX
export KUBECTL=$K8S_BIN/kubectl
export HELM=$HELM_BIN/helm
export KWOK=$KWOK_BIN/kwok
export TESTBED_KWOK_STAGES=$CACHE/kwok-$KWOK_VERSION/stages.yaml
export NACOS_PYTHON=$PYENV/bin/python
export NACOS_JAVA=$(command -v java)
export NACOS_JAVA_APP_V2=$(java_client_dir "$JAVA_SDK_V2")
export NACOS_JAVA_APP_V1=$(java_client_dir "$JAVA_SDK_V1")
export NACOS_USERNAME=$NACOS_USER
export NACOS_PASSWORD=$NACOS_PASS
export PATH=$K8S_BIN:$HELM_BIN:\$PATH
EOF
  wanted rnacos && echo "export RNACOS_ADDR=http://127.0.0.1:$(cat "$STATE/ports/rnacos")"
  wanted rnacos-auth && echo "export RNACOS_AUTH_ADDR=http://127.0.0.1:$(cat "$STATE/ports/rnacos-auth")"
  if wanted nacos-2.5.1; then
    echo "export NACOS_V2_ADDR=http://127.0.0.1:$(cat "$STATE/ports/nacos-2.5.1")"
    echo "export NACOS_V2_VERSION=2.5.1"
    echo "export NACOS_V2_DIST=$(nacos_dist 2.5.1)"
  fi
  if wanted nacos-3.0.3; then
    echo "export NACOS_V3_ADDR=http://127.0.0.1:$(cat "$STATE/ports/nacos-3.0.3")"
    echo "export NACOS_V3_VERSION=3.0.3"
    echo "export NACOS_V3_CONSOLE=http://127.0.0.1:$(cat "$STATE/ports/nacos-3.0.3-console")"
  fi
  return 0
}

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok rnacos rnacos-auth nacos-2.5.1 nacos-3.0.3)
OPTIONAL=(rnacos rnacos-auth nacos-2.5.1 nacos-3.0.3)
WITHOUT=" ${TESTBED_WITHOUT:-} "
WITHOUT=${WITHOUT//,/ }
for c in $WITHOUT; do
  [[ " ${OPTIONAL[*]} " == *" $c "* ]] || die "TESTBED_WITHOUT: $c cannot be left out (only: ${OPTIONAL[*]})"
done
# wanted NAME: whether this testbed runs component NAME.
wanted() { [[ $WITHOUT != *" $1 "* ]]; }

cmd_up() {
  need curl "apt-get install curl"
  need openssl "apt-get install openssl"
  if [ -d "$STATE/pids" ]; then
    local c missing=()
    for c in "${COMPONENTS[@]}"; do wanted "$c" && ! is_running "$c" && missing+=("$c"); done
    if [ ${#missing[@]} -eq 0 ]; then
      log "already running; not starting a second copy"
      print_env
      return 0
    fi
    die "a partial testbed is in $STATE (not running: ${missing[*]}); run: tests/testbed.sh down"
  fi
  build_all
  mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/ports"
  log "starting on 127.0.0.1; state and logs in $STATE"
  gen_certs
  # The JVMs start (20-40 s) while the rest comes up.
  if wanted nacos-2.5.1; then launch_nacos nacos-2.5.1 2.5.1; fi
  if wanted nacos-3.0.3; then launch_nacos nacos-3.0.3 3.0.3; fi
  start_k8s
  start_kwok
  if wanted rnacos; then start_rnacos rnacos false; fi
  if wanted rnacos-auth; then start_rnacos rnacos-auth true; fi
  if wanted nacos-2.5.1; then ready_nacos nacos-2.5.1 2.5.1; fi
  if wanted nacos-3.0.3; then ready_nacos nacos-3.0.3 3.0.3; fi
  log "up"
  print_env
}

cmd_down() {
  [ -d "$STATE" ] || { log "nothing to stop"; return 0; }
  local c pid i
  # Reverse order: clients before the servers they talk to.
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[$i]}
    [ -f "$STATE/pids/$c" ] || continue
    pid=$(cat "$STATE/pids/$c")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  # Processes that tests start (operators, Nacos clients) record their PIDs under extra-pids/.
  if [ -d "$STATE/extra-pids" ]; then
    for f in "$STATE"/extra-pids/*; do
      [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
  fi
  rm -rf "$STATE"
  log "down"
}

# start_apiserver: kube-apiserver on the ports recorded in $STATE/ports (etcd must run).
start_apiserver() {
  local etcd_port api_port d=$STATE/pki
  etcd_port=$(cat "$STATE/ports/etcd"); api_port=$(cat "$STATE/ports/apiserver")
  start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$d" \
    --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" --client-ca-file "$d/ca.crt" \
    --authorization-mode Node,RBAC --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$d/sa.pub" \
    --service-account-signing-key-file "$d/sa.key" --api-audiences https://kubernetes.default.svc \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,DefaultTolerationSeconds \
    --disable-admission-plugins StorageObjectInUseProtection,PersistentVolumeClaimResize,DefaultStorageClass \
    --enable-priority-and-fairness=false --profiling=false
  write_kubeconfig
  wait_for kube-apiserver 90 curl -fsS --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
    "https://127.0.0.1:$api_port/readyz"
}

# restart-apiserver [SECONDS]: stop kube-apiserver, keep it down SECONDS (default 0), start it again on
# the same port; etcd and everything else keep running (for the fault tests).
cmd_restart_apiserver() {
  is_running kube-apiserver || die "kube-apiserver does not run in $STATE"
  local pid
  pid=$(cat "$STATE/pids/kube-apiserver")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  sleep "${1:-0}"
  start_apiserver
  log "kube-apiserver restarted"
}

cmd_status() {
  [ -d "$STATE/pids" ] || { echo "testbed: not running"; return 0; }
  local c
  for c in "${COMPONENTS[@]}"; do
    wanted "$c" || continue
    if is_running "$c"; then
      printf '%-26s running  pid %-8s port %s\n' "$c" "$(cat "$STATE/pids/$c")" "$(cat "$STATE/ports/$c" 2>/dev/null || echo -)"
    else
      printf '%-26s STOPPED  (log: %s)\n' "$c" "$STATE/logs/$c.log"
    fi
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  build) shift; build_all "$@" ;;
  restart-apiserver) cmd_restart_apiserver "${2:-0}" ;;
  *) echo "usage: $0 up|down|status|env|build|restart-apiserver [SECONDS]" >&2; exit 2 ;;
esac
