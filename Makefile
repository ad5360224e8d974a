# make test  builds cronsync, then kube-apiserver and etcd for the integration
#            tests (once; cached in .cache/testbin), then runs every test.
# make demo  syncs examples/hello from this repository into a cluster started
#            on this machine (API server, controllers, a kwok node) in five
#            steps, checking each; CI runs it after the tests.
GO ?= go

.PHONY: build test testbin demo

# The same static build the Dockerfile makes.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o cronsync .

testbin:
	hack/testbin/build.sh

test: build
	$(GO) vet ./...
	KUBEBUILDER_ASSETS="$$(hack/testbin/build.sh)" $(GO) test -count=1 ./...

demo: build
	KUBEBUILDER_ASSETS="$$(hack/testbin/build.sh)" $(GO) run ./hack/demo
