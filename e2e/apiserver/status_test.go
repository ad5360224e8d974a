package apiserver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

const beaconCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: beacons.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: beacons, singular: beacon, kind: Beacon, listKind: BeaconList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
          status:
            type: object
            properties:
              beat: {type: integer}
`

// A controller writing status between the LIST and the dry run is not a
// change: the object is reported unchanged and not written. Here a
// "controller" (the test) updates every Beacon's status as fast as it can
// while cronsync checks them the slow way.
func TestStatusWrittenDuringTheCheckIsNotAChange(t *testing.T) {
	const ns, n = "beacons", 20
	if err := applyYAML(beaconCRD); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	for i := range n {
		r.Write(fmt.Sprintf("b/%02d.yaml", i), fmt.Sprintf("apiVersion: example.com/v1\nkind: Beacon\nmetadata: {name: b%02d, namespace: %s}\nspec: {size: 1}\n", i, ns))
	}
	r.Commit("beacons")
	args := []string{"--repo", r.Dir, "--applyset", "default/beacons", "--fast-unchanged=false", "--workers", "1"}
	mustSync(t, args...)

	beacons := kube.Resource(crdGVR("example.com", "v1", "beacons")).Namespace(ns)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	beats := 0
	wg.Go(func() {
		for beat := 1; ctx.Err() == nil; beat++ {
			for i := range n {
				_, err := beacons.Patch(ctx, fmt.Sprintf("b%02d", i), types.MergePatchType,
					[]byte(fmt.Sprintf(`{"status":{"beat":%d}}`, beat)), metav1.PatchOptions{FieldManager: "beacon-controller"}, "status")
				if err == nil {
					beats++
				}
			}
		}
	})
	time.Sleep(200 * time.Millisecond)
	mark := cluster.AuditMark()
	out := mustSync(t, args...)
	stop()
	wg.Wait()
	if beats < 2*n {
		t.Fatalf("only %d status updates: the test did not race the check", beats)
	}
	if !strings.Contains(out.stdout, fmt.Sprintf("%d objects: 0 created, 0 configured, %d unchanged, 0 failed", n+1, n+1)) {
		t.Errorf("status updates made objects look changed")
	}
	events, err := cluster.AuditSince(mark, "admin")
	if err != nil {
		t.Fatal(err)
	}
	// The claim needs a status write between the run's LIST of the Beacons
	// and its dry run of the same Beacon: the audit log, in the order the
	// API server finished the requests, must show one.
	listAt, raced := -1, 0
	for i, ev := range events {
		if ev.Verb == "list" && strings.Contains(ev.RequestURI, "/namespaces/"+ns+"/beacons") {
			listAt = i
			break
		}
	}
	for i := range n {
		name := fmt.Sprintf("/beacons/b%02d", i)
		wrote := false
		for _, ev := range events[listAt+1:] {
			if ev.Verb != "patch" || !strings.Contains(ev.RequestURI, name) {
				continue
			}
			if strings.Contains(ev.RequestURI, name+"/status") {
				wrote = true
			} else if strings.Contains(ev.RequestURI, name+"?") && strings.Contains(ev.RequestURI, "dryRun=All") {
				if wrote {
					raced++
				}
				break
			}
		}
	}
	if listAt < 0 || raced == 0 {
		t.Fatalf("no status write landed between the run's LIST (at %d) and a Beacon's dry run: the test did not race the check", listAt)
	}
	t.Logf("%d of %d Beacons had their status written between the LIST and their dry run", raced, n)
	for _, ev := range events {
		if ev.Verb == "patch" && strings.Contains(ev.RequestURI, "/beacons/") && !strings.Contains(ev.RequestURI, "dryRun=All") && !strings.Contains(ev.RequestURI, "beacon-controller") {
			t.Errorf("written: %s", ev.RequestURI)
		}
	}
}
