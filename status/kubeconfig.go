package status

import (
	"fmt"
	"os"
	"slices"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is one kubeconfig context to read.
type Cluster struct {
	// Context is its name in the kubeconfig ("" for the in-cluster
	// configuration of a pod).
	Context string
	// Config connects to it.
	Config *rest.Config
	// Namespace is the context's namespace, where status looks unless told
	// otherwise.
	Namespace string
}

func (c Cluster) namespace(opts Options) string {
	if opts.Namespace != "" {
		return opts.Namespace
	}
	return c.Namespace
}

func (c Cluster) describe(opts Options) string {
	where := "namespace " + c.namespace(opts)
	if opts.AllNamespaces {
		where = "all namespaces"
	}
	if c.Context == "" {
		return where
	}
	return "context " + c.Context + ", " + where
}

// Clusters loads the kubeconfig as kubectl does (kubeconfig, else KUBECONFIG,
// else ~/.kube/config; in a pod with none, the pod's service account) and
// returns the contexts named, every context with all, or the current one.
// Its errors are the caller's configuration: a kubeconfig that cannot be
// read, a context it does not have.
func Clusters(kubeconfig string, contexts []string, all bool) ([]Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	raw, err := rules.Load()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	if all {
		for name := range raw.Contexts {
			contexts = append(contexts, name)
		}
		slices.Sort(contexts)
		if len(contexts) == 0 {
			return nil, fmt.Errorf("--all-contexts: the kubeconfig has no contexts")
		}
	}
	for _, name := range contexts {
		if _, ok := raw.Contexts[name]; !ok {
			return nil, fmt.Errorf("--context %q: no such context in the kubeconfig", name)
		}
	}
	if len(contexts) == 0 {
		if len(raw.Clusters) == 0 && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
			return nil, errNoCluster
		}
		contexts = []string{""} // the current one, or the pod's own
	}
	var out []Cluster
	seen := map[string]bool{}
	for _, name := range contexts {
		if seen[name] {
			continue
		}
		seen[name] = true
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: name})
		cfg, err := cc.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		ns, _, err := cc.Namespace()
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		if name == "" {
			name = raw.CurrentContext
		}
		// A person's command reads a few lists: client-go's default of 5
		// requests a second would only make it wait.
		cfg.QPS, cfg.Burst = 50, 100
		out = append(out, Cluster{Context: name, Config: cfg, Namespace: ns})
	}
	return out, nil
}
