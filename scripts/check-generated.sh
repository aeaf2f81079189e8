#!/usr/bin/env bash
# Fails when src/generated/ is not exactly what the protos produce (someone edited it by
# hand, or changed a proto without `npm run generate`).
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent generate
if ! git diff --quiet --exit-code -- src/generated || [ -n "$(git ls-files --others --exclude-standard -- src/generated)" ]; then
  echo "src/generated/ is out of date with proto/: run 'npm run generate' and commit the result." >&2
  git status --short -- src/generated >&2
  exit 1
fi
echo "src/generated/ matches proto/"
