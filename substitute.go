package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/internal/redact"
	"github.com/cronsync/cronsync/render"
)

// varSource is one --substitute-from: a ConfigMap or Secret whose keys are
// variables.
type varSource struct {
	// flag is the value as given, for messages.
	flag string
	// secret: a Secret, whose values are masked in every output.
	secret bool
	// ref is [NAMESPACE/]NAME.
	ref string
	// optional: a trailing "?"; a source that does not exist gives no
	// variables instead of failing the run.
	optional bool
}

// parseVarSources reads --substitute-from values.
func parseVarSources(flags []string) ([]varSource, error) {
	var out []varSource
	for _, f := range flags {
		s := varSource{flag: f}
		rest, optional := strings.CutSuffix(f, "?")
		s.optional = optional
		kind, ref, ok := strings.Cut(rest, "/")
		switch strings.ToLower(kind) {
		case "configmap", "configmaps", "cm":
		case "secret", "secrets":
			s.secret = true
		default:
			ok = false
		}
		if !ok || ref == "" || strings.Count(ref, "/") > 1 || strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") {
			return nil, usageErrorf("--substitute-from takes configmap/[NAMESPACE/]NAME or secret/[NAMESPACE/]NAME, with a trailing ? if it may be missing; not %q", f)
		}
		s.ref = ref
		out = append(out, s)
	}
	return out, nil
}

// inlineVars reads --substitute KEY=VALUE; a key that is not a variable
// name is the flag's mistake, so it is an error rather than a warning.
func inlineVars(args []string) (map[string]string, error) {
	m, err := keyValues("substitute", args)
	if err != nil {
		return nil, err
	}
	for k := range m {
		if !render.VarNameRE.MatchString(k) {
			return nil, usageErrorf("--substitute %q: a variable name must match %s", k, render.VarNameRE)
		}
	}
	return m, nil
}

// substituteVars gathers the variables: each source in the order given,
// later ones winning, then --substitute. It costs one GET per source. A
// Secret's values are registered with secrets before anything could print
// them.
func substituteVars(ctx context.Context, restCfg *rest.Config, kube *genericclioptions.ConfigFlags, sources []varSource, inline map[string]string, secrets *redact.Secrets, stderr io.Writer) (map[string]string, error) {
	vars := map[string]string{}
	if len(sources) > 0 {
		dyn, err := dynamic.NewForConfig(restCfg)
		if err != nil {
			return nil, err
		}
		for _, s := range sources {
			ns, name, err := namespacedName(s.ref, kube)
			if err != nil {
				return nil, err
			}
			resource := "configmaps"
			if s.secret {
				resource = "secrets"
			}
			u, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: resource}).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) && s.optional:
				continue
			case apierrors.IsNotFound(err):
				// The CronJob names it: exit 2, not the 3 a 404 on the
				// commit's own objects means.
				return nil, usageErrorf("--substitute-from %s: %s %s -n %s not found (a trailing ? makes it optional)", s.flag, strings.TrimSuffix(resource, "s"), name, ns)
			case err != nil:
				return nil, fmt.Errorf("--substitute-from %s: reading %s %s -n %s: %w", s.flag, strings.TrimSuffix(resource, "s"), name, ns, err)
			}
			data, _ := u.Object["data"].(map[string]any)
			var skipped []string
			for k, v := range data {
				str, _ := v.(string)
				if s.secret {
					b, err := base64.StdEncoding.DecodeString(str)
					if err != nil {
						return nil, fmt.Errorf("--substitute-from %s: key %q: %w", s.flag, k, err)
					}
					str = string(b)
				}
				if !render.VarNameRE.MatchString(k) {
					skipped = append(skipped, k)
					continue
				}
				if s.secret {
					secrets.Add(str, strings.ReplaceAll(str, "\n", ""))
				}
				vars[k] = strings.ReplaceAll(str, "\n", "")
			}
			if len(skipped) > 0 {
				slices.Sort(skipped)
				for i, k := range skipped {
					skipped[i] = redact.CleanLine(k)
				}
				warn(stderr, secrets, fmt.Sprintf("--substitute-from %s: keys that are not variable names (%s) are skipped: %s", s.flag, render.VarNameRE, strings.Join(skipped, ", ")))
			}
		}
	}
	for k, v := range inline {
		vars[k] = strings.ReplaceAll(v, "\n", "")
	}
	return vars, nil
}
