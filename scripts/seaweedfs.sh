#!/usr/bin/env bash
# Builds SeaweedFS's weed binary from its Go module, once, and prints its path.
# The S3 tests and `go run ./bench -archives s3` run it as their
# S3-compatible server. `go install` refuses the module (its go.mod has
# replace directives), so it is built inside the downloaded module folder.
#
# The binary is cached in $ACTIVITYSTORE_WEED_CACHE, by default
# ${XDG_CACHE_HOME:-$HOME/.cache}/activitystore, under the version's name.
# With --check it only says, by its exit status, whether it is built.
set -euo pipefail
version=v0.0.0-20261109003541-7506e5f91cd6
cache=${ACTIVITYSTORE_WEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/activitystore}
bin=$cache/weed-$version
if [ -x "$bin" ]; then
  [ "${1:-}" = --check ] || echo "$bin"
  exit 0
fi
if [ "${1:-}" = --check ]; then
  exit 1
fi
mkdir -p "$cache"
# Concurrent runs (parallel test packages) wait for one build instead of
# racing on the same output: flock where available (util-linux).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$bin.lock"
  flock 9
  if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
  fi
fi
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ]; then
  echo "seaweedfs.sh: go mod download gave no folder" >&2
  exit 1
fi
tmp=$bin.tmp.$$
trap 'rm -f "$tmp"' EXIT
(cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o "$tmp" ./weed)
mv -f "$tmp" "$bin"
echo "$bin"
