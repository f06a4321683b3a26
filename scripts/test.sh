#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine.
#
# What the tests need: a Rust toolchain (the machine's), a C compiler for
# `ring` (gcc), and the workspace's own binaries — the end-to-end tests start
# the real `cloister-enclave` and `cloister-gateway` processes, so they are
# built first. No Python, network service or hardware is needed: the demo
# model and its onnxruntime reference outputs are committed, and attestation
# uses the SIMULATED provider plus real SEV-SNP vectors in attestation/tests/data.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

echo "== building the binaries the end-to-end tests start"
cargo build --workspace --bins --locked
echo "== running every test"
cargo test --workspace --locked "$@"
