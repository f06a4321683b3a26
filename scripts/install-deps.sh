#!/usr/bin/env bash
# Installs the system packages the build and the tests need, on a fresh Debian machine.
#   gcc, libc6-dev   C compiler for `ring`
#   pkg-config       to find the system OpenSSL
#   libssl-dev       opendp links the system OpenSSL for its CSPRNG (OPENSSL_NO_VENDOR=1 in
#                    .cargo/config.toml) instead of compiling a vendored copy from C
#   python3, pip     the engine's conformance test installs onnx==1.23.2 and writes the
#                    ONNX node tests with it
set -euo pipefail
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
