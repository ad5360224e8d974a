#!/usr/bin/env bash
# Builds the kube-apiserver and etcd that the integration tests start through
# envtest, from the Go module proxy, once per version. Prints the directory
# holding them (for KUBEBUILDER_ASSETS); progress goes to stderr.
#
# The versions are the ones go.mod in this directory requires; the binaries
# are cached under .cache/testbin (ignored by git) or $TESTBIN_DIR.
#
# `build.sh kubectl` also builds kubectl (the benchmark compares against it;
# the tests do not need it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
out=${TESTBIN_DIR:-$here/../../.cache/testbin}/kubernetes-$k8s-etcd-$etcd
v=k8s.io/component-base/version
minor=${k8s#v1.}; minor=${minor%%.*}
# Without the version stamped in, the binaries report v0.0.0 and clients that
# compare versions (kubectl) complain.
ldflags="-s -w -X $v.gitVersion=$k8s -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
if [ "${1:-}" = kubectl ] && [ ! -x "$out/kubectl" ]; then
  echo "building kubectl $k8s into $out" >&2
  mkdir -p "$out"
  go build -trimpath -ldflags="$ldflags" -o "$out/kubectl.partial.$$" k8s.io/kubernetes/cmd/kubectl >&2
  mv "$out/kubectl.partial.$$" "$out/kubectl"
fi
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
echo "building kube-apiserver $k8s and etcd $etcd into $out (takes several minutes, once)" >&2
tmp="$out.partial.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
go build -trimpath -ldflags="$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -trimpath -ldflags='-s -w' -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
if [ -x "$out/kubectl" ]; then cp "$out/kubectl" "$tmp/"; fi
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
