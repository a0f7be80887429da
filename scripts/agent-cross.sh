#!/usr/bin/env bash
# Cross-builds the slim device agent for the edge targets and prints each
# binary's size, stripped (-s -w) and not. Usage: scripts/agent-cross.sh [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
printf '%-8s %12s %12s\n' arch bytes stripped
for arch in amd64 arm arm64 mipsle riscv64; do
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -o "$out/unhidra-agent-$arch" ./cmd/unhidra-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags="-s -w" -o "$out/unhidra-agent-$arch-stripped" ./cmd/unhidra-agent
	printf '%-8s %12d %12d\n' "$arch" "$(stat -c %s "$out/unhidra-agent-$arch")" "$(stat -c %s "$out/unhidra-agent-$arch-stripped")"
done
