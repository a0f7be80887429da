#!/usr/bin/env bash
# Release build: scripts/release.sh (make release)
#
# Cross-builds the server and the agent, static (CGO_ENABLED=0), for each
# platform in PLATFORMS (default: linux/amd64 linux/arm64 linux/arm/7),
# writes SHA256SUMS over the binaries and a CycloneDX SBOM of the module
# (cyclonedx-gomod, fetched through the Go module proxy; SBOM=0 skips it).
# Output in DIST (default dist/VERSION). VERSION defaults to git describe.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 linux/arm/7}
DIST=${DIST:-dist/$VERSION}
SBOM=${SBOM:-1}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DATE=$(git log -1 --format=%cI 2>/dev/null || echo unknown)
ldflags="-s -w -X main.version=$VERSION -X main.commit=$REVISION -X main.buildDate=$DATE"

rm -rf "$DIST"
mkdir -p "$DIST"
for p in $PLATFORMS; do
	IFS=/ read -r os arch arm <<<"$p"
	suffix="$os-$arch${arm:+v$arm}"
	for cmd in unhidra unhidra-agent; do
		echo "release: $cmd $suffix" >&2
		CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOARM=$arm go build -trimpath -buildvcs=true -ldflags "$ldflags" \
			-o "$DIST/$cmd-$VERSION-$suffix" "./cmd/$cmd"
	done
done
(cd "$DIST" && sha256sum unhidra-* >SHA256SUMS)
if [ "$SBOM" = 1 ]; then
	echo "release: SBOM" >&2
	go run github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0 mod -licenses=false -json \
		-output "$DIST/unhidra-$VERSION.sbom.cdx.json" . 2>/dev/null
fi
echo "$DIST"
