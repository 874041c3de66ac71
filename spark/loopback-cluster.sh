#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1 from this module's build, for measuring the jobs on more
# than one executor JVM (as StandaloneClusterIT does, but left running between commands):
#   spark/loopback-cluster.sh start [WORKERS [CORES_PER_WORKER [MEMORY_PER_WORKER]]]   (default 2 1 3g)
#   spark/loopback-cluster.sh stop
# The master listens on spark://127.0.0.1:${HEADROOM_SPARK_PORT:-7077}; logs and the workers' work
# directories are in spark/target/loopback/. Build first: bin/headroom spark --help (or mvn -f spark/pom.xml package).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../bin/setup.sh"
dir="$HEADROOM_HOME/spark/target/loopback"
port=${HEADROOM_SPARK_PORT:-7077}

daemon() { # name, main class, arguments…: a JVM in the background, its pid in $dir/pids
  local name=$1; shift
  SPARK_HOME="$dir/home" SPARK_LOCAL_IP=127.0.0.1 SPARK_SCALA_VERSION=2.13 nohup "$JAVA_HOME/bin/java" \
    "@$HEADROOM_HOME/spark/jvm.options" -Xmx256m -cp "$dir/home/jars/*" "$@" >"$dir/$name.log" 2>&1 &
  echo $! >>"$dir/pids"
}

case "${1:-}" in
  start)
    workers=${2:-2} cores=${3:-1} memory=${4:-3g}
    headroom_find_jdk
    [ -d "$HEADROOM_HOME/spark/target/spark-lib" ] || headroom_fail "spark/target/spark-lib is missing: build the module first (bin/headroom spark --help)"
    [ -f "$dir/pids" ] && headroom_fail "a loopback cluster seems to run already ($dir/pids); stop it first: $0 stop"
    mkdir -p "$dir/home"
    ln -sfn "$HEADROOM_HOME/spark/target/spark-lib" "$dir/home/jars"
    daemon master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" --webui-port 0
    for _ in $(seq 1 300); do grep -q "I have been elected leader" "$dir/master.log" 2>/dev/null && break; sleep 0.2; done
    for w in $(seq 0 $((workers - 1))); do
      mkdir -p "$dir/worker$w"
      daemon "worker$w" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores "$cores" --memory "$memory" \
        --work-dir "$dir/worker$w" --webui-port 0 "spark://127.0.0.1:$port"
    done
    for _ in $(seq 1 300); do
      [ "$(grep -c "Registering worker" "$dir/master.log" 2>/dev/null || true)" -ge "$workers" ] && break; sleep 0.2
    done
    [ "$(grep -c "Registering worker" "$dir/master.log" || true)" -ge "$workers" ] || headroom_fail "workers did not register in 60 s; see $dir/*.log"
    headroom_say "spark://127.0.0.1:$port: $workers workers × $cores cores, $memory each (logs in $dir)"
    ;;
  stop)
    [ -f "$dir/pids" ] || { headroom_say "no loopback cluster runs ($dir/pids is missing)"; exit 0; }
    pids=$(cat "$dir/pids")
    for p in $pids; do pkill -TERM -P "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 100); do alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 0.2; done
    for p in $pids; do pkill -KILL -P "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$dir/pids"
    headroom_say "loopback cluster stopped"
    ;;
  *) echo "usage: $0 start [WORKERS [CORES_PER_WORKER [MEMORY]]] | stop" >&2; exit 2 ;;
esac
