# make test  builds cronsync, then kube-apiserver and etcd for the integration
#            tests (once; cached in .cache/testbin), then runs every test.
# make fuzz  fuzzes every Fuzz target in turn, FUZZTIME (30s) each; FUZZ
#            picks targets by a regexp (FUZZ=Sops), FUZZFLAGS adds go test
#            flags (-parallel 1 on a shared machine). Any go test already
#            runs each target's seeds and its finds pinned in testdata/fuzz.
# make demo  syncs examples/hello from this repository into a cluster started
#            on this machine (API server, controllers, a kwok node) in six
#            steps, checking each; CI runs it after the tests. It builds only
#            that cluster's binaries.
GO ?= go
# What --version prints and the ApplySet parent records; the Dockerfile takes
# the same as a build argument.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: build test testbin demo fuzz

# The same static build the Dockerfile makes.
OUT ?= cronsync
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w -X main.buildVersion=$(VERSION)" -o $(OUT) .

testbin:
	hack/testbin/build.sh

test: build
	$(GO) vet ./...
	KUBEBUILDER_ASSETS="$$(hack/testbin/build.sh)" $(GO) test -count=1 ./...

# Minimizing each new input for a minute (go's default) leaves slow targets
# idle for most of a short run.
FUZZTIME ?= 30s
FUZZFLAGS ?= -fuzzminimizetime 10s
FUZZ ?= .
# One target per go test (-fuzz takes one), found by name in the test files
# rather than by go test -list, which would start the cluster TestMain
# starts in the root package.
fuzz:
	@failed=""; \
	for dir in $$(grep -l '^func Fuzz' $$(find . -name '*_test.go' -not -path './.cache/*') | xargs -n1 dirname | sort -u); do \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | sed 's/^func //' | grep -E '$(FUZZ)'); do \
	    echo "== $$t ($$dir, $(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$dir || failed="$$failed $$t"; \
	  done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzzing found inputs that fail:$$failed (kept in testdata/fuzz/)"; exit 1; fi

# The demo builds only the cluster it starts (no helm, kustomize, jsonnet,
# sops or age-keygen: it runs none of them).
demo: build
	KUBEBUILDER_ASSETS="$$(hack/testbin/build.sh cluster)" $(GO) run ./hack/demo
