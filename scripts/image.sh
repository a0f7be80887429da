#!/usr/bin/env bash
# Builds the container images with podman: scripts/image.sh [server|agent|all]
#
# The static binaries are built here with the local Go toolchain
# (CGO_ENABLED=0), then copied into scratch images (deploy/container), so
# no base image is pulled. Environment: VERSION (default: git describe),
# IMAGE (default unhidra), GOARCH (default: this machine's), OUT_DIR (a
# scratch directory for the build context; default .cache/image).
# Prints the image references it built.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
IMAGE=${IMAGE:-unhidra}
ARCH=${GOARCH:-$(go env GOARCH)}
OUT_DIR=${OUT_DIR:-.cache/image}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
CA=/etc/ssl/certs/ca-certificates.crt
[ -r "$CA" ] || { echo "image: $CA missing (install ca-certificates)" >&2; exit 1; }
command -v podman >/dev/null || { echo "image: podman is not installed (scripts/setup.sh installs it)" >&2; exit 1; }

ctx="$OUT_DIR/ctx"
rm -rf "$ctx"
mkdir -p "$ctx/bin" "$ctx/etc/ssl/certs" "$ctx/data"
cp deploy/container/etc/passwd deploy/container/etc/group "$ctx/etc/"
cp "$CA" "$ctx/etc/ssl/certs/ca-certificates.crt"
# The VCS stamp of go build is the source of commit and date; the -X values
# stand in where go build cannot read the checkout (a git worktree).
ldflags="-s -w -X main.version=$VERSION -X main.commit=$REVISION -X main.buildDate=$(git log -1 --format=%cI 2>/dev/null || echo unknown)"

build() { # name package
	CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" go build -trimpath -buildvcs=true -ldflags "$ldflags" -o "$ctx/bin/$1" "$2"
}
args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED" --arch "$ARCH")
if [ "$what" = server ] || [ "$what" = all ]; then
	build unhidra ./cmd/unhidra
	podman build -q "${args[@]}" -f deploy/container/Containerfile -t "$IMAGE:$VERSION" "$ctx" >/dev/null
	echo "$IMAGE:$VERSION"
fi
if [ "$what" = agent ] || [ "$what" = all ]; then
	build unhidra-agent ./cmd/unhidra-agent
	podman build -q "${args[@]}" -f deploy/container/Containerfile.agent -t "$IMAGE-agent:$VERSION" "$ctx" >/dev/null
	echo "$IMAGE-agent:$VERSION"
fi
