#!/usr/bin/env bash
# Builds the kube-apiserver and etcd that the integration tests start through
# envtest, from the Go module proxy, once per version. Prints the directory
# holding them (for KUBEBUILDER_ASSETS); progress goes to stderr.
#
# The versions are the ones go.mod in this directory requires; the binaries
# are cached under .cache/testbin (ignored by git) or $TESTBIN_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
out=${TESTBIN_DIR:-$here/../../.cache/testbin}/kubernetes-$k8s-etcd-$etcd
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
echo "building kube-apiserver $k8s and etcd $etcd into $out (takes several minutes, once)" >&2
tmp="$out.partial.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
# Without the version stamped in, the server reports v0.0.0 and clients that
# compare versions (kubectl) complain.
v=k8s.io/component-base/version
minor=${k8s#v1.}; minor=${minor%%.*}
go build -trimpath -ldflags="-s -w -X $v.gitVersion=$k8s -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
  -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -trimpath -ldflags='-s -w' -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
