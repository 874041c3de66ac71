# Sourced by bin/headroom and bin/test: makes a fresh machine ready to build and run Headroom.
#   headroom_find_jdk          sets JAVA_HOME to a JDK >= 25 (JAVA_HOME, PATH, /usr/lib/jvm/*)
#   headroom_need_packages P…  installs Debian packages that are missing, when allowed
#   headroom_build             builds target/headroom.jar when it is missing or older than the sources
# Installing needs root or password-less sudo; HEADROOM_NO_INSTALL=1 forbids it (then a missing
# package is an error that names the apt-get command to run).

HEADROOM_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HEADROOM_JVM_FLAGS="--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED"

headroom_say() { printf 'headroom: %s\n' "$*" >&2; }

headroom_java_major() {
  # Prints the major version of the java binary $1, or nothing.
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -n 1
}

headroom_find_jdk() {
  local candidates=() c major
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in /usr/lib/jvm/*; do candidates+=("$c"); done
  for c in "${candidates[@]}"; do
    [ -x "$c/bin/java" ] && [ -x "$c/bin/javac" ] || continue
    major=$(headroom_java_major "$c/bin/java")
    if [ -n "$major" ] && [ "$major" -ge 25 ]; then
      export JAVA_HOME="$c"
      return 0
    fi
  done
  headroom_say "no JDK 25 or newer found (looked at JAVA_HOME, java on PATH and /usr/lib/jvm/*)."
  headroom_say "Install one (e.g. Temurin 25) and set JAVA_HOME to it."
  return 1
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
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! headroom_can_install; then
    headroom_say "missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}"
    return 1
  fi
  headroom_say "installing ${missing[*]} (apt-get)"
  if ! headroom_apt apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
    headroom_apt apt-get update -q >/dev/null 2>&1 || true
    headroom_apt apt-get install -y -q "${missing[@]}" >/dev/null || {
      headroom_say "apt-get install ${missing[*]} failed"; return 1; }
  fi
}

headroom_build() {
  local jar="$HEADROOM_HOME/target/headroom.jar"
  if [ -f "$jar" ] && [ -d "$HEADROOM_HOME/target/lib" ] && \
     [ -z "$(find "$HEADROOM_HOME/src" "$HEADROOM_HOME/pom.xml" -newer "$jar" -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || headroom_need_packages maven || return 1
  headroom_say "building (mvn package, first run downloads dependencies from Maven Central)"
  (cd "$HEADROOM_HOME" && mvn -B -q package -DskipTests) || { headroom_say "build failed"; return 1; }
}
