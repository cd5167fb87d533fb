# Shared setup steps for scripts/demo, scripts/test and .ci/run (sourced, not executed).
# Each step is idempotent: a second run reuses what the first installed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
      echo "$candidate"; return 0
    fi
  done
  echo "Python 3.11 or newer is required" >&2; return 1
}

# Create .venv and install requirements (again only when a requirements file changed).
# ensure_venv        -> runtime packages; ensure_venv dev -> runtime and test packages.
ensure_venv() {
  local files=("$ROOT/requirements.txt") pending=() f
  [ -n "${1:-}" ] && files+=("$ROOT/requirements-dev.txt")
  if [ ! -x "$PY" ]; then
    log "creating virtual environment in .venv"
    "$(find_python)" -m venv "$VENV"
  fi
  for f in "${files[@]}"; do
    [ -f "$(stamp_for "$f")" ] || pending+=("$f")
  done
  [ ${#pending[@]} -eq 0 ] && return 0
  log "installing Python packages from ${pending[*]##*/}"
  # This machine's pip configuration warns about missing local indexes: hide only those lines.
  "$PY" -m pip install --quiet --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
  local args=()
  for f in "${files[@]}"; do args+=(-r "$f"); done
  "$PY" -m pip install --quiet "${args[@]}" 2> >(grep -v "^WARNING: Location" >&2)
  # pyradiomics 3.0.1 has no Python 3.11 wheel and its sdist needs numpy at build time.
  "$PY" -m pip install --quiet --no-build-isolation "pyradiomics==3.0.1" \
    2> >(grep -v "^WARNING: Location" >&2)
  if [ -n "${1:-}" ]; then
    # fastMRI's reference code, for tests only; --no-deps keeps it from replacing torch.
    "$PY" -m pip install --quiet --no-deps "fastmri==0.3.0" 2> >(grep -v "^WARNING: Location" >&2)
  fi
  for f in "${pending[@]}"; do touch "$(stamp_for "$f")"; done
}

stamp_for() { echo "$VENV/.installed-$(basename "$1")-$(sha256sum "$1" | cut -c1-16)"; }

# Debian packages the tests need: Chromium for Playwright, BART as a reference.
ensure_debian_packages() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v bart >/dev/null 2>&1 || missing+=(bart)
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  # WeasyPrint (analysis report PDFs) loads Pango through cffi.
  /sbin/ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 || missing+=(libpango-1.0-0 libpangoft2-1.0-0)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (install them with apt-get as root)" >&2
    return 1
  fi
}

# The reader's DICOM viewer bundle (frontend/ -> static/viewer/), rebuilt only when its
# sources change.
ensure_frontend() {
  command -v npm >/dev/null 2>&1 || { echo "npm (Node.js 18+) is needed to build the viewer" >&2; return 1; }
  "$ROOT/scripts/build_frontend.sh" --if-needed
}

# PostgreSQL and Redis on their standard local ports; start them if they are down.
ensure_services() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null 2>&1; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    fi
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; return 1; }
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; return 1; }
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='recontrial'" postgres \
    | grep -q 1 || createdb -h 127.0.0.1 -U postgres recontrial
}
