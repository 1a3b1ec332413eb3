#!/usr/bin/env bash
# Installs what the tests need beyond cargo, into caches under $HOME that later
# runs reuse (each step is skipped when its cache is current), and exports where
# they are. Sourced by scripts/test.sh; assumes only the Rust toolchain (with
# cargo-nextest), gcc, CPython 3 with pip and venv, and git:
#   $HOME/.cache/lighttrace-venv    Python venv with tests/requirements.txt
#   $HOME/.cache/lighttrace-tools   s3s-fs, the S3 test server
#   $HOME/.cache/lighttrace-node    node_modules of tests/node (npm ci), when node
#                                   and npm are installed
#   psql                            Debian's postgresql-client, installed with
#                                   apt-get when missing (as root, or with sudo)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lighttrace-target}"
export CARGO_TERM_COLOR=never
# LIGHTTRACE_VENV: another venv, e.g. for a worktree whose requirements differ.
VENV="${LIGHTTRACE_VENV:-$HOME/.cache/lighttrace-venv}"
TOOLS="$HOME/.cache/lighttrace-tools"
NODE_DIR="${LIGHTTRACE_NODE_DIR:-$HOME/.cache/lighttrace-node}"
S3S_FS_VERSION=0.14.1
PYTHON="${PYTHON:-python3}"

step() {
  local name=$1
  shift
  echo
  echo "==> [test tools] $name"
  local started=$SECONDS
  "$@"
  echo "<== [test tools] $name: $((SECONDS - started)) s"
}

print_tools() {
  rustc --version
  cargo --version
  cargo nextest --version | sed -n 1p
  "$PYTHON" --version
  node --version 2>/dev/null || echo "node: not found"
  echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
  if [ ! -f ../shared/data/topologies/hipster-shop.json ]; then
    echo "warning: ../shared/data/topologies/hipster-shop.json is missing; the gen tests will fail" >&2
  fi
}

# The venv is rebuilt when tests/requirements.txt or the Python version changes.
install_python_packages() {
  local stamp="$VENV/.lighttrace-requirements"
  local want
  want="$("$PYTHON" --version 2>&1) $(sha256sum tests/requirements.txt | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c 'import duckdb, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.zipkin.json, sentry_sdk, brotli, psycopg' 2>/dev/null; then
    echo "venv $VENV is current"
    return
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r tests/requirements.txt
  echo "$want" >"$stamp"
  "$VENV/bin/python" -m pip list --disable-pip-version-check --format=freeze
}

# node_modules of tests/node, reinstalled (npm ci) when its package-lock.json or
# the Node version changes. Without node or npm the step only says so; the tests
# that need them then skip (in CI they fail).
install_node_packages() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node or npm not found: the @sentry/node end-to-end test will skip (fail in CI)" >&2
    return
  fi
  local stamp="$NODE_DIR/.lighttrace-lock"
  local want
  want="node $(node --version) $(sha256sum tests/node/package-lock.json | cut -d' ' -f1)"
  if [ -d "$NODE_DIR/node_modules/@sentry/node" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$NODE_DIR/node_modules is current"
    return
  fi
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  cp tests/node/package.json tests/node/package-lock.json "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
  (cd "$NODE_DIR" && npm ls --depth=0)
}

# psql for the Postgres wire protocol test. Without it (and no way to install
# it) the step only says so; the test then skips (fails in CI).
install_debian_packages() {
  if ! command -v psql >/dev/null; then
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
      sudo=(sudo -n)
    fi
    if command -v apt-get >/dev/null && { [ ${#sudo[@]} = 0 ] || sudo -n true 2>/dev/null; }; then
      "${sudo[@]}" apt-get update -qq
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        postgresql-client >/dev/null
    else
      echo "psql not found and apt-get is not usable: the Postgres test will skip (fail in CI)" >&2
      return
    fi
  fi
  psql --version
}

install_s3s_fs() {
  local binary="$TOOLS/bin/s3s-fs"
  if [ -x "$binary" ] && [ "$("$binary" --version 2>/dev/null)" = "s3s-fs $S3S_FS_VERSION" ]; then
    echo "$("$binary" --version) is installed"
    return
  fi
  # A throwaway target dir: the tool's dependency versions are its own (--locked),
  # and the shared one stays for the workspace.
  local build_dir
  build_dir="$(mktemp -d)"
  cargo install "s3s-fs@$S3S_FS_VERSION" --features binary --locked \
    --root "$TOOLS" --target-dir "$build_dir" --force
  rm -rf "$build_dir"
  "$binary" --version
}

step "tool versions" print_tools
step "python packages (tests/requirements.txt)" install_python_packages
step "s3s-fs $S3S_FS_VERSION" install_s3s_fs
step "Debian packages (postgresql-client)" install_debian_packages
step "node packages (tests/node/package-lock.json)" install_node_packages

export LIGHTTRACE_PYTHON="$VENV/bin/python"
export LIGHTTRACE_S3S_FS="$TOOLS/bin/s3s-fs"
if command -v psql >/dev/null; then
  LIGHTTRACE_PSQL="$(command -v psql)"
  export LIGHTTRACE_PSQL
fi
if [ -d "$NODE_DIR/node_modules/@sentry/node" ]; then
  export LIGHTTRACE_NODE_MODULES="$NODE_DIR/node_modules"
fi
export LIGHTTRACE_SHARED_DIR="${LIGHTTRACE_SHARED_DIR:-$(cd .. && pwd)/shared}"

