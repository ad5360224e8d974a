package testenv

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// CRD is the manifest of a namespaced CRD in example.com/v1 for kind,
// whose spec.size must be a non-negative integer: the schema gives the API
// server something to reject.
func CRD(kind string) string {
	lower := strings.ToLower(kind)
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[1]ss.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: %[1]ss, singular: %[1]s, kind: %[2]s, listKind: %[2]sList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 0}
`, lower, kind)
}

// Namespace is the manifest of a Namespace.
func Namespace(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", name)
}

// ConfigMap is the manifest of a ConfigMap in ns whose data holds value.
func ConfigMap(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  value: %q\n", name, ns, value)
}

var uniques atomic.Int64

// Unique returns prefix with a number no other call in this process has
// returned, for names that must be new each time a test runs (go test
// -count=2 runs it again against the same cluster).
func Unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, uniques.Add(1))
}
