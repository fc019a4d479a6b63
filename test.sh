#!/usr/bin/env bash
# Runs Switchyard's whole test suite on a fresh Debian machine.
#
# Installs what the tests need (Python clients into .venv, npm hot-shots, Node.js when
# missing), starts the local protocol servers (kinesis-local, kinesalite, dynalite, tansu), then
# builds once and runs every test of the workspace: unit, property, golden and end-to-end
# (the real binary on loopback sockets driven by real client libraries and servers).
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v curl >/dev/null || need_apt+=(curl)
# The unit's system call filter is checked against what the binary calls under strace.
command -v strace >/dev/null || need_apt+=(strace)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

clients=dataplane/switchyard/tests/e2e/clients
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$clients/requirements.txt"
(cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)

# The protocol servers the stream tests use, on loopback: installed once into .ci/cache/,
# started in the background unless already answering (see .ci/servers/).
for server in kinesis-local kinesalite dynalite tansu; do
  .ci/servers/$server.sh >/dev/null
done

export SWITCHYARD_TEST_PYTHON="$PWD/.venv/bin/python"
features=(--features switchyard-lease/dynamodb,switchyard-sinks/kafka,switchyard-workers/kafka,switchyard/kafka,switchyard/dynamodb)
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace "${features[@]}" --no-fail-fast "$@"
else
  cargo test --workspace "${features[@]}" --no-fail-fast "$@"
fi
