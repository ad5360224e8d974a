package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// The shards that hold a large set's fingerprints belong to its parent:
// the garbage collector deletes them with it.
func TestShardsAreDeletedWithTheirParent(t *testing.T) {
	ns := testenv.Unique("shards-gc")
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", testenv.Namespace(ns))
	var docs []string
	for i := range 200 {
		docs = append(docs, testenv.ConfigMap(ns, fmt.Sprintf("cm-%03d", i), "v"))
	}
	r.Write("cms.yaml", strings.Join(docs, "---\n"))
	r.Commit("generated")
	wantExit(t, cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait=false", "--fast-data-bytes", "2048"), 0)

	ctx := context.Background()
	parent := live(t, secrets, ns, "cs")
	selector := metav1.ListOptions{LabelSelector: "cronsync.dev/fast-data-of=" + parent.GetLabels()["applyset.kubernetes.io/id"]}
	shards, err := kube.Resource(secrets).Namespace(ns).List(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards.Items) < 2 {
		t.Fatalf("%d shards; the test needs several", len(shards.Items))
	}
	if err := kube.Resource(secrets).Namespace(ns).Delete(ctx, "cs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		shards, err := kube.Resource(secrets).Namespace(ns).List(ctx, selector)
		if err != nil {
			t.Fatal(err)
		}
		if len(shards.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d shards still there a minute after their parent was deleted", len(shards.Items))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
