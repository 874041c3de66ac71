#!/usr/bin/env bash
# Regenerates src/generated/java/dev/headroom/blas/generated/ from native/headroom_cblas.h.
# This runs jextract; it does not build it. Point JEXTRACT at a jextract binary
# (see jextract/README.md for the version the committed bindings came from).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${JEXTRACT:?set JEXTRACT to the jextract launcher, e.g. .../jextract/bin/jextract}"
rm -rf src/generated/java/dev/headroom/blas/generated
"$JEXTRACT" \
  --output src/generated/java \
  --target-package dev.headroom.blas.generated \
  --header-class-name cblas_h \
  @jextract/includes.txt \
  native/headroom_cblas.h
