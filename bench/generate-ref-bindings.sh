#!/usr/bin/env bash
# Regenerates bench/src/generated/java/dev/headroom/bench/ref/generated/ from native/attention_ref.h.
# This runs jextract; it does not build it. Point JEXTRACT at a jextract launcher
# (jextract/README.md, section "The C reference bindings of bench/", gives the version used).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${JEXTRACT:?set JEXTRACT to the jextract launcher, e.g. .../jextract/bin/jextract}"
rm -rf bench/src/generated/java/dev/headroom/bench/ref/generated
"$JEXTRACT" \
  --output bench/src/generated/java \
  --target-package dev.headroom.bench.ref.generated \
  --header-class-name attention_ref_h \
  @bench/ref-includes.txt \
  native/attention_ref.h
