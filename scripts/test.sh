#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine.
#
# What the tests need: a Rust toolchain (the machine's), the system packages
# that scripts/install-deps.sh installs, and the workspace's own binaries: the
# end-to-end tests start the real `cloister-enclave` and `cloister-gateway`
# processes, so they are built first. No Python, network service or hardware is needed: the demo
# model and its onnxruntime reference outputs are committed, and attestation
# uses the SIMULATED provider plus real SEV-SNP vectors in attestation/tests/data.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== building the binaries the end-to-end tests start"
cargo build --workspace --bins --locked
echo "== running every test"
cargo test --workspace --locked "$@"
