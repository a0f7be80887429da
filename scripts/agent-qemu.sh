#!/usr/bin/env bash
# Prints the path of qemu-aarch64-static, fetching it first if needed:
# the Debian package is large, so only the one emulator is extracted into
# .cache/qemu (gitignored). Exits non-zero with a message when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=.cache/qemu
bin=$cache/usr/bin/qemu-aarch64-static
if [ -x "$bin" ]; then echo "$PWD/$bin"; exit 0; fi
if command -v qemu-aarch64-static >/dev/null; then command -v qemu-aarch64-static; exit 0; fi
mkdir -p "$cache"
cd "$cache"
if ! ls qemu-user-static_*.deb >/dev/null 2>&1; then
	# A fresh machine has no package lists yet: update once and retry.
	if ! apt-get download qemu-user-static >&2 && ! { apt-get update -qq >&2 && apt-get download qemu-user-static >&2; }; then
		echo "agent-qemu: apt-get download qemu-user-static failed (is apt reachable?)" >&2
		exit 1
	fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg -x qemu-user-static_*.deb "$tmp"
mkdir -p usr/bin
cp "$tmp/usr/bin/qemu-aarch64-static" usr/bin/
rm -f qemu-user-static_*.deb
echo "$PWD/usr/bin/qemu-aarch64-static"
