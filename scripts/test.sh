#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test (unit, SQL and the
# end-to-end tests in crates/cli/tests that drive the real binary).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'binary(crash_recovery)'   # extra arguments go to nextest
#
# The end-to-end tests find their tools through LIGHTTRACE_PYTHON (a venv with
# tests/requirements.txt) and LIGHTTRACE_S3S_FS; scripts/test-tools.sh installs
# both under ~/.cache on the first run (about 4 minutes) and exports them. With
# LIGHTTRACE_NO_TOOLS=1 and no tools, the tests that need them are skipped with a
# loud message, except in CI (CI=true), where they fail.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lighttrace-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Python venv and s3s-fs under ~/.cache (skipped when current); exports
# LIGHTTRACE_PYTHON and LIGHTTRACE_S3S_FS. LIGHTTRACE_NO_TOOLS=1 skips it.
if [ "${LIGHTTRACE_NO_TOOLS:-0}" != 1 ]; then
  # shellcheck source=scripts/test-tools.sh
  source scripts/test-tools.sh
fi

# Every step runs even after one fails, so one run shows every problem; the exit
# status is non-zero if any step failed.
failed=()
step() {
  local name=$1
  shift
  echo
  echo "==> $name"
  local started=$SECONDS status=0
  "$@" || status=$?
  echo "<== $name: $((SECONDS - started)) s$([ "$status" = 0 ] || echo ", FAILED (exit $status)")"
  [ "$status" = 0 ] || failed+=("$name")
}

python_syntax() {
  "${LIGHTTRACE_PYTHON:-python3}" -c '
import ast, sys
for path in sys.argv[1:]:
    with open(path) as f:
        ast.parse(f.read(), path)
' tests/python/*.py
}

step "cargo fmt --check" cargo fmt --all -- --check
step "python syntax" python_syntax
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo nextest" cargo nextest run --workspace --locked --no-fail-fast "$@"
# nextest does not run doctests.
step "doctests" cargo test --workspace --doc --locked

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'scripts/test.sh: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "scripts/test.sh: all steps passed"
