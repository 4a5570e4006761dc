#!/usr/bin/env bash
# Apache Kafka (KRaft) on loopback for tests and development, from the
# broker's own jars on Maven Central (tests/kafka/pom.xml); no tarballs, no
# containers.
#
#   kafka.sh fetch                      jars into build/kafka/VERSION/lib (once; cached)
#   kafka.sh up --dir D [--nodes 1|3] [--sasl] [--timeout S] [--version V]
#                                       writes D/nodeN/server.properties, formats
#                                       storage, starts every node, waits until
#                                       a metadata request lists them all, prints
#                                       bootstrap.servers=... (and, with --sasl,
#                                       sasl_ssl.bootstrap.servers=...)
#   kafka.sh down --dir D               stops exactly the nodes it started (PIDs)
#   kafka.sh kill --dir D --node N      kill -9 one node (failover tests)
#   kafka.sh start --dir D --node N     starts a stopped node again
#   kafka.sh wait --dir D [--timeout S] waits until every node answers again
#
# Each node is a combined broker+controller with a static quorum, listeners
# on free loopback ports. Three nodes: replication factor 3,
# min.insync.replicas 2, transaction state log sized for 3. --sasl adds a
# SASL_SSL listener (advertised as localhost) with a certificate signed by
# a throw-away CA (D/tls/ca.pem) and the user openexec / openexec-secret
# for SASL/PLAIN and SCRAM-SHA-512 (created at format time).
# The version is OPENEXEC_KAFKA_VERSION or --version [4.1.1]; 3.9.1 is the
# newest that librdkafka < 2.6.1 (Debian 12 has 2.0.2) can authenticate
# with over SCRAM (librdkafka#4895: Kafka 4 checks the SCRAM nonce
# strictly).
# Exit 1 with a one-line reason on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=${OPENEXEC_KAFKA_VERSION:-4.1.1}
set_version() {
    VERSION=$1
    LIB=$ROOT/build/kafka/$VERSION/lib
}
set_version "$VERSION"
HEAP=${OPENEXEC_KAFKA_HEAP:--Xmx768m}
SASL_USER=openexec
SASL_PASSWORD=openexec-secret

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

fetch() {
    if [ -f "$LIB/.complete" ]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (make deps installs maven)"
    command -v java >/dev/null || die "java not found (make deps installs default-jdk-headless)"
    rm -rf "$LIB"
    mkdir -p "$LIB"
    if ! mvn -q -B -f "$ROOT/tests/kafka/pom.xml" -Dkafka.version="$VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$LIB" >"$LIB/../fetch.log" 2>&1; then
        die "could not fetch Apache Kafka's jars from Maven Central: $(grep -m1 -E 'ERROR|Could not' "$LIB/../fetch.log" | tr -s ' ' | cut -c1-300)"
    fi
    ls "$LIB"/kafka_2.13-"$VERSION".jar >/dev/null 2>&1 || die "fetched, but no kafka_2.13 jar in $LIB"
    touch "$LIB/.complete"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

java_run() {
    java -cp "$LIB/*" "$@"
}

node_pid() {
    local f=$DIR/node$1/pid
    [ -f "$f" ] && cat "$f"
}

# A process that exited but was not reaped (its parent, this script, is
# gone, and init may not reap) counts as stopped.
pid_alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

node_alive() {
    local pid
    pid=$(node_pid "$1") || return 1
    [ -n "$pid" ] && pid_alive "$pid"
}

start_node() {
    local n=$1
    local nd=$DIR/node$n
    if node_alive "$n"; then
        return 0
    fi
    # setsid: a Ctrl-C or a test runner's process group signal does not
    # reach the broker; `down` stops it by PID.
    setsid java $HEAP -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$DIR/log4j2.properties" -Dkafka.logs.dir="$nd" \
        -cp "$LIB/*" kafka.Kafka "$nd/server.properties" >>"$nd/log" 2>&1 </dev/null &
    echo $! >"$nd/pid"
}

# Waits until a metadata request through every node's PLAINTEXT listener
# lists all nodes.
wait_up() {
    local timeout=$1 deadline n bs
    deadline=$((SECONDS + timeout))
    bs=$(cat "$DIR/bootstrap")
    n=$(cat "$DIR/nodes")
    while :; do
        if kcat -L -b "$bs" -m 3 2>/dev/null | grep -qE "^ *$n brokers:"; then
            return 0
        fi
        for i in $(seq 1 "$n"); do
            if ! node_alive "$i" && [ ! -f "$DIR/node$i/killed" ]; then
                die "node $i exited during start: $(grep -m1 -E 'ERROR|Exception' "$DIR/node$i/log" | cut -c1-300)"
            fi
        done
        [ $SECONDS -lt "$deadline" ] || die "the cluster in $DIR did not list $n brokers within ${timeout}s"
        sleep 0.3
    done
}

make_tls() {
    local t=$DIR/tls
    mkdir -p "$t"
    (
        cd "$t"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=openexec test CA" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out server.pem
        openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem \
            -name localhost -passout pass:keystore-secret -out server.p12
    ) >"$t/openssl.log" 2>&1 || die "openssl could not make the test certificates: $(tail -n1 "$t/openssl.log")"
}

up() {
    local nodes=1 sasl=0 timeout=90
    while [ $# -gt 0 ]; do
        case $1 in
            --dir) DIR=$2; shift 2 ;;
            --nodes) nodes=$2; shift 2 ;;
            --sasl) sasl=1; shift ;;
            --timeout) timeout=$2; shift 2 ;;
            --version) set_version "$2"; shift 2 ;;
            *) die "up: unexpected argument $1" ;;
        esac
    done
    [ -n "${DIR:-}" ] || die "up: --dir is required"
    case $nodes in 1 | 3) ;; *) die "up: --nodes must be 1 or 3" ;; esac
    command -v kcat >/dev/null || die "kcat not found (make deps installs it)"
    fetch
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    [ ! -f "$DIR/nodes" ] || die "$DIR already holds a cluster (kafka.sh down --dir $DIR first)"
    local rf=1 isr=1 i voters="" bootstrap="" sbootstrap=""
    if [ "$nodes" = 3 ]; then rf=3; isr=2; fi
    local -a port cport sport
    for i in $(seq 1 "$nodes"); do
        port[i]=$(free_port)
        cport[i]=$(free_port)
        sport[i]=$(free_port)
        voters+="${voters:+,}$i@127.0.0.1:${cport[i]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${port[i]}"
        sbootstrap+="${sbootstrap:+,}localhost:${sport[i]}"
    done
    [ "$sasl" = 0 ] || make_tls
    cat >"$DIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
EOF
    local id
    # URL-safe base64 of 16 random bytes, not starting with '-' (the
    # storage tool would read it as an option).
    id=$(python3 -c 'import base64, uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"):
        break
print(i)')
    for i in $(seq 1 "$nodes"); do
        local nd=$DIR/node$i listeners advertised protomap
        mkdir -p "$nd/data"
        listeners="PLAINTEXT://127.0.0.1:${port[i]},CONTROLLER://127.0.0.1:${cport[i]}"
        advertised="PLAINTEXT://127.0.0.1:${port[i]}"
        protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if [ "$sasl" = 1 ]; then
            listeners+=",SASL_SSL://127.0.0.1:${sport[i]}"
            advertised+=",SASL_SSL://localhost:${sport[i]}"
            protomap+=",SASL_SSL:SASL_SSL"
        fi
        cat >"$nd/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
inter.broker.listener.name=PLAINTEXT
log.dirs=$nd/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
log.retention.hours=24
unclean.leader.election.enable=false
EOF
        if [ "$sasl" = 1 ]; then
            cat >>"$nd/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
ssl.keystore.type=PKCS12
ssl.keystore.location=$DIR/tls/server.p12
ssl.keystore.password=keystore-secret
ssl.key.password=keystore-secret
EOF
        fi
        local -a scram=()
        [ "$sasl" = 0 ] || scram=(--add-scram "SCRAM-SHA-512=[name=\"$SASL_USER\",password=\"$SASL_PASSWORD\"]")
        java_run kafka.tools.StorageTool format -t "$id" -c "$nd/server.properties" \
            "${scram[@]}" >"$nd/format.log" 2>&1 ||
            die "formatting node $i failed: $(grep -v '^$' "$nd/format.log" | tail -n1 | cut -c1-300)"
    done
    echo "$bootstrap" >"$DIR/bootstrap"
    [ "$sasl" = 0 ] || echo "$sbootstrap" >"$DIR/bootstrap.sasl"
    echo "$nodes" >"$DIR/nodes"
    echo "$VERSION" >"$DIR/version"
    for i in $(seq 1 "$nodes"); do start_node "$i"; done
    if ! (wait_up "$timeout"); then
        down_all
        exit 1
    fi
    echo "bootstrap.servers=$bootstrap"
    [ "$sasl" = 0 ] || echo "sasl_ssl.bootstrap.servers=$sbootstrap"
}

stop_node() {
    local n=$1 sig=${2:-TERM} pid i
    pid=$(node_pid "$n") || return 0
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        kill -9 "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$DIR/node$n/pid"
}

down_all() {
    local n i
    [ -f "$DIR/nodes" ] || return 0
    n=$(cat "$DIR/nodes")
    # All at once: a node waiting for its quorum to shut down cleanly
    # would otherwise wait for peers that are already gone.
    for i in $(seq 1 "$n"); do
        pid=$(node_pid "$i") && kill -TERM "$pid" 2>/dev/null || true
    done
    for i in $(seq 1 "$n"); do stop_node "$i" TERM; done
    rm -f "$DIR/nodes"
}

args_dir_node() {
    NODE=
    local timeout=90
    while [ $# -gt 0 ]; do
        case $1 in
            --dir) DIR=$2; shift 2 ;;
            --node) NODE=$2; shift 2 ;;
            --timeout) timeout=$2; shift 2 ;;
            *) die "unexpected argument $1" ;;
        esac
    done
    [ -n "${DIR:-}" ] || die "--dir is required"
    DIR=$(cd "$DIR" && pwd)
    TIMEOUT=$timeout
    [ ! -f "$DIR/version" ] || set_version "$(cat "$DIR/version")"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    fetch)
        [ "${1:-}" != --version ] || set_version "$2"
        fetch
        ;;
    up) up "$@" ;;
    down)
        args_dir_node "$@"
        down_all
        ;;
    kill)
        args_dir_node "$@"
        [ -n "$NODE" ] || die "kill: --node is required"
        touch "$DIR/node$NODE/killed"
        stop_node "$NODE" KILL
        ;;
    start)
        args_dir_node "$@"
        [ -n "$NODE" ] || die "start: --node is required"
        rm -f "$DIR/node$NODE/killed"
        start_node "$NODE"
        ;;
    wait)
        args_dir_node "$@"
        wait_up "$TIMEOUT"
        ;;
    *)
        die "usage: kafka.sh fetch | up --dir D [--nodes 1|3] [--sasl] | down --dir D | kill|start --dir D --node N | wait --dir D"
        ;;
esac
