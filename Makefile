# make test  builds cronsync, then kube-apiserver and etcd for the integration
#            tests (once; cached in .cache/testbin), then runs every test.
# make demo  syncs examples/hello from this repository into a cluster started
#            on this machine (API server, controllers, a kwok node) in six
#            steps, checking each; CI runs it after the tests. It builds only
#            that cluster's binaries.
GO ?= go
# What --version prints and the ApplySet parent records; the Dockerfile takes
# the same as a build argument.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: build test testbin demo

# The same static build the Dockerfile makes.
OUT ?= cronsync
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w -X main.buildVersion=$(VERSION)" -o $(OUT) .

testbin:
	hack/testbin/build.sh

test: build
	$(GO) vet ./...
	KUBEBUILDER_ASSETS="$$(hack/testbin/build.sh)" $(GO) test -count=1 ./...

# The demo builds only the cluster it starts (no helm, kustomize, jsonnet,
# sops or age-keygen: it runs none of them).
demo: build
	KUBEBUILDER_ASSETS="$$(hack/testbin/build.sh cluster)" $(GO) run ./hack/demo
