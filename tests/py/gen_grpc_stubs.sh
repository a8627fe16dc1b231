#!/usr/bin/env bash
# Regenerates tests/py/grpc_stubs/ (the Python client of DTM's gRPC API used by
# tests/tests/it/dtm_grpc_python.rs) from tc/proto/dtmgimp.proto with grpcio-tools, the
# version pinned in tests/py/requirements.txt. Run after changing the proto or the pin.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="$(scripts/python-env.sh | tail -n 1)"
"$python" -m grpc_tools.protoc -I tc/proto \
  --python_out=tests/py/grpc_stubs --grpc_python_out=tests/py/grpc_stubs \
  tc/proto/dtmgimp.proto
