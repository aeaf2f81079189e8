#!/usr/bin/env bash
# Copies the google.rpc protos we depend on from the pinned google-proto-files package.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p third_party/googleapis/google/rpc
cp node_modules/google-proto-files/google/rpc/status.proto \
   node_modules/google-proto-files/google/rpc/error_details.proto \
   third_party/googleapis/google/rpc/
