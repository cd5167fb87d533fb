#!/usr/bin/env bash
# Build the reader's DICOM viewer (frontend/, cornerstone3D + esbuild) into static/viewer/.
#
#   scripts/build_frontend.sh            npm ci (when package-lock.json changed) and build
#   scripts/build_frontend.sh --if-needed   skip everything when sources are unchanged
#   scripts/build_frontend.sh --dev      unminified build with inline source maps
#
# Needs Node.js >= 18 (esbuild's minimum; developed and tested on Node 20) and npm; the
# registry is used only by npm ci. The output is not committed;
# setup and CI run this script. Django serves the result as /static/viewer/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRONTEND="$ROOT/frontend"
OUT="$ROOT/static/viewer"
if_needed=0
build_args=()
for arg in "$@"; do
  case "$arg" in
    --if-needed) if_needed=1 ;;
    --dev) build_args+=(--dev) ;;
    *) echo "usage: $0 [--if-needed] [--dev]" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool is required to build the viewer (install Node.js 18 or newer)" >&2; exit 1; }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "Node.js >= 18 is required to build the viewer (found $(node --version))" >&2; exit 1
fi

# Fingerprint of everything that affects the bundle.
source_hash() {
  (cd "$FRONTEND" && find build.mjs package.json package-lock.json src -type f -print0 \
    | sort -z | xargs -0 sha256sum; echo "${build_args[*]:-}") | sha256sum | cut -c1-32
}

hash="$(source_hash)"
if [ "$if_needed" = 1 ] && [ -f "$OUT/.source-hash" ] && [ -f "$OUT/viewer.js" ] \
   && [ "$(cat "$OUT/.source-hash")" = "$hash" ]; then
  log "viewer bundle is up to date ($OUT)"
  exit 0
fi

lock_hash="$(sha256sum "$FRONTEND/package-lock.json" | cut -c1-32)"
stamp="$FRONTEND/node_modules/.installed-$lock_hash"
if [ ! -f "$stamp" ]; then
  log "installing viewer packages (npm ci)"
  (cd "$FRONTEND" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi

log "building viewer bundle into static/viewer/"
(cd "$FRONTEND" && node build.mjs "${build_args[@]}")
echo "$hash" > "$OUT/.source-hash"
