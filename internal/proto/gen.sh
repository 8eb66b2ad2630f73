#!/usr/bin/env bash
# Regenerates the Go code of the wire protocol. Called by `make proto`.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$(go env GOPATH)/bin:$PATH"
for d in mgmtpb signalpb daemonpb; do
  protoc -I "$d" -I /usr/include \
    --go_out="$d" --go_opt=paths=source_relative \
    --go-grpc_out="$d" --go-grpc_opt=paths=source_relative \
    "$d"/*.proto
done
