#!/usr/bin/env bash
# Builds the control plane the integration tests start, from the Go module
# proxy, once per version, and prints the directory holding it (for
# KUBEBUILDER_ASSETS); progress goes to stderr:
#   kube-apiserver and etcd (started through envtest by every test package),
#   kube-controller-manager and kube-scheduler (the e2e tests, which need
#   rollouts, Jobs and garbage collection to happen), and
#   kwok with its stage files in kwok-stages/ (fake nodes, so that pods are
#   scheduled and become Ready, and Job pods complete, with no container
#   runtime), and
#   helm and kustomize, the CLIs whose renders of the same charts the Helm
#   tests compare cronsync's with: helm at the SDK version cronsync's go.mod
#   requires, kustomize at the release built on the kustomize/api it does;
#   jsonnet, built from the go-jsonnet version cronsync evaluates with; and
#   sops and age-keygen at the versions cronsync decrypts with, which the
#   SOPS tests encrypt their fixtures with.
#
# The Kubernetes and etcd versions are the ones go.mod in this directory
# requires; kwok is its own module with its own dependencies, so it is built
# with `go install` at the version below. The binaries are cached under
# .cache/testbin (ignored by git) or $TESTBIN_DIR.
#
# `build.sh kubectl` also builds kubectl (the benchmark compares against it;
# the tests do not need it). `build.sh cluster` builds only what starts a
# cluster that acts (kube-apiserver, etcd, kube-controller-manager,
# kube-scheduler, kwok): what `make demo` runs, without the CLIs the tests
# compare with, which on a cold machine took minutes of the demo's build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
kwok=v0.8.0
helm=$(cd ../.. && go list -m -f '{{.Version}}' helm.sh/helm/v4)
# kustomize v5.8.1 is the CLI release built on sigs.k8s.io/kustomize/api
# v0.21.1; change both together.
kustomize=v5.8.1
jsonnet=$(cd ../.. && go list -m -f '{{.Version}}' github.com/google/go-jsonnet)
sops=$(cd ../.. && go list -m -f '{{.Version}}' github.com/getsops/sops/v3)
age=$(cd ../.. && go list -m -f '{{.Version}}' filippo.io/age)
k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
out=${TESTBIN_DIR:-$here/../../.cache/testbin}/kubernetes-$k8s-etcd-$etcd
v=k8s.io/component-base/version
minor=${k8s#v1.}; minor=${minor%%.*}
# Without the version stamped in, the binaries report v0.0.0 and clients that
# compare versions (kubectl) complain.
ldflags="-s -w -X $v.gitVersion=$k8s -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
mkdir -p "$out"

# The binaries of k8s.io/kubernetes and etcd come from one `go build`, so that
# one action graph compiles the packages they share once and keeps both cores
# busy through the links, which run one at a time when the binaries are built
# one after another. kwok, helm and kustomize are separate modules with their
# own dependencies; they are built at the same time, each in the background.
# Each result is moved into place only when complete, so an interrupted build
# never leaves a broken binary.
want=(kube-apiserver etcd kube-controller-manager kube-scheduler)
clis=true
for arg in "$@"; do
  case $arg in
    kubectl) want+=(kubectl) ;;
    cluster) clis=false ;;
    *) echo "build.sh: unknown argument $arg (kubectl, cluster)" >&2; exit 2 ;;
  esac
done
pkgs=()
for name in "${want[@]}"; do
  [ -x "$out/$name" ] && continue
  case $name in
    etcd) pkgs+=(go.etcd.io/etcd/server/v3) ;;
    *) pkgs+=("k8s.io/kubernetes/cmd/$name") ;;
  esac
done
tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT

k8s_build() {
  [ ${#pkgs[@]} -eq 0 ] && return 0
  echo "building ${pkgs[*]} into $out (takes minutes, once)" >&2
  local tmp="$out/k8s.partial.$$"
  # go build names etcd's binary after the element before its /v3: server.
  go build -trimpath -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}" >&2
  [ -x "$tmp/server" ] && mv "$tmp/server" "$tmp/etcd"
  for f in "$tmp"/*; do mv "$f" "$out/"; done
  rm -rf "$tmp"
}

kwok_build() {
  [ -x "$out/kwok" ] && return 0
  echo "building kwok $kwok into $out" >&2
  local tmp="$out/kwok.partial.$$"
  # Outside this module: kwok's own go.mod decides its dependencies.
  (cd / && GOBIN="$tmp/bin" GOFLAGS=-mod=mod go install -trimpath -ldflags='-s -w' "sigs.k8s.io/kwok/cmd/kwok@$kwok") >&2
  local src
  src=$(cd / && go mod download -json "sigs.k8s.io/kwok@$kwok" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  # Nodes become Ready and keep heartbeating; pods become Ready; Job pods
  # complete; deleted pods go away.
  mkdir -p "$tmp/stages"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cp "$src/kustomize/stage/$f" "$tmp/stages/$(basename "$f")"
  done
  rm -rf "$out/kwok-stages"
  mv "$tmp/stages" "$out/kwok-stages"
  mv "$tmp/bin/kwok" "$out/kwok"
  rm -rf "$tmp"
}

# gotool NAME PKG VERSION installs a CLI from its own module (its go.mod
# decides its dependencies), again only when the version changed.
gotool() {
  local name=$1 pkg=$2 version=$3
  [ -x "$out/$name" ] && [ "$(cat "$out/$name.version" 2>/dev/null)" = "$version" ] && return 0
  echo "building $name $version into $out" >&2
  local tmp="$out/$name.partial.$$"
  (cd / && GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath -ldflags='-s -w' "$pkg@$version") >&2
  mv "$tmp/$name" "$out/$name"
  echo "$version" > "$out/$name.version"
  rm -rf "$tmp"
}

tmps=("$out/k8s.partial.$$" "$out/kwok.partial.$$" "$out/helm.partial.$$" "$out/kustomize.partial.$$" "$out/jsonnet.partial.$$" "$out/sops.partial.$$" "$out/age-keygen.partial.$$")
pids=()
k8s_build & pids+=($!)
kwok_build & pids+=($!)
if $clis; then
  gotool helm helm.sh/helm/v4/cmd/helm "$helm" & pids+=($!)
  gotool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$kustomize" & pids+=($!)
  gotool jsonnet github.com/google/go-jsonnet/cmd/jsonnet "$jsonnet" & pids+=($!)
  gotool sops github.com/getsops/sops/v3/cmd/sops "$sops" & pids+=($!)
  gotool age-keygen filippo.io/age/cmd/age-keygen "$age" & pids+=($!)
fi
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ $failed -ne 0 ]; then
  echo "build.sh: a build failed (its output is above)" >&2
  exit 1
fi
trap - EXIT
echo "$out"
