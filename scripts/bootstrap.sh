# Sourced by scripts/dev, scripts/test, scripts/bench and scripts/admin.
# Installs what is missing into the git-ignored .local/ folder and puts it on PATH.
# Why a venv: moto_server, cargo-lambda (with its zig) and cfn-lint all come from PyPI, so one
# Python venv holds every tool the local stack needs, and nothing touches the system.
set -euo pipefail

NODEAI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODEAI_LOCAL="$NODEAI_ROOT/.local"
NODEAI_VENV="$NODEAI_LOCAL/venv"
# Pinned so a fresh machine gets exactly what was checked here.
NODEAI_PY_PACKAGES=("moto[server]==5.2.5" "cargo-lambda==1.9.2" "cfn-lint==1.58.0" "openapi-spec-validator==0.9.0" "schemathesis==4.32.5")

# The SAM CLI, for `sam validate --lint` in scripts/test: a venv of its own, since it pins its
# own cfn-lint and moto's dependencies need not agree with it.
NODEAI_SAM_VENV="$NODEAI_LOCAL/sam-venv"
NODEAI_SAM_PACKAGE="aws-sam-cli==1.170.0"

log() { printf '\033[1m[nodeai]\033[0m %s\n' "$*" >&2; }

ensure_tools() {
  local stamp="$NODEAI_VENV/.installed-$(printf '%s ' "${NODEAI_PY_PACKAGES[@]}" | sha256sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    log "installing local tools into .local/venv (first run only): ${NODEAI_PY_PACKAGES[*]}"
    command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
    [ -x "$NODEAI_VENV/bin/python" ] || python3 -m venv "$NODEAI_VENV"
    "$NODEAI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$NODEAI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${NODEAI_PY_PACKAGES[@]}"
    touch "$stamp"
  fi
  export PATH="$NODEAI_VENV/bin:$PATH"
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest missing: installing it with cargo (first run only)"
    cargo install --locked cargo-nextest
  fi
}

ensure_sam() {
  local stamp="$NODEAI_SAM_VENV/.installed-$NODEAI_SAM_PACKAGE"
  if [ ! -f "$stamp" ]; then
    log "installing $NODEAI_SAM_PACKAGE into .local/sam-venv (first run only)"
    [ -x "$NODEAI_SAM_VENV/bin/python" ] || python3 -m venv "$NODEAI_SAM_VENV"
    "$NODEAI_SAM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$NODEAI_SAM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$NODEAI_SAM_PACKAGE"
    touch "$stamp"
  fi
}

# A free TCP port on loopback, asked of the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Wait until an HTTP endpoint answers anything at all.
wait_http() {
  local url="$1" seconds="${2:-60}" i
  for ((i = 0; i < seconds * 10; i++)); do
    if curl -s -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  log "timed out waiting for $url"
  return 1
}

# Starts the emulator (moto_server with DynamoDB's write atomicity, see scripts/emulator.py) on
# 127.0.0.1:$1 in its own process group, logging to $2; waits until it answers; prints its pid
# (= its process group id, for kill -- -pid).
start_emulator() {
  local port="$1" logfile="$2"
  setsid python "$NODEAI_ROOT/scripts/emulator.py" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
  local pid=$!
  wait_http "http://127.0.0.1:$port/moto-api/" 60 >&2
  echo "$pid"
}

# The environment every local process uses to reach the emulator.
emulator_env() {
  local port="$1"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="$AWS_REGION"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  export AWS_EC2_METADATA_DISABLED=true
}

# schemathesis against a running stack, from the generated openapi.json: every operation, up
# to $3 generated cases each, no 5xx, every 4xx/5xx in the error envelope
# (scripts/schemathesis_hooks.py). One worker: cargo lambda watch runs each function one
# request at a time. Usage: run_schemathesis URL KEY MAX_EXAMPLES [extra schemathesis args...]
run_schemathesis() {
  local url="$1" key="$2" examples="$3"
  shift 3
  PYTHONPATH="$NODEAI_ROOT/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$NODEAI_VENV/bin/schemathesis" run "$NODEAI_ROOT/openapi.json" --url "$url" \
    -H "Authorization: Bearer $key" --max-examples "$examples" \
    --checks not_a_server_error,error_envelope --workers 1 --request-timeout 60 --no-color "$@"
}
