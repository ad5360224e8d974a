package lease

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/internal/testenv"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	c, err := testenv.StartClusterUnaudited()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

// counted returns a config whose requests are counted by method.
func counted() (*rest.Config, map[string]*atomic.Int32) {
	n := map[string]*atomic.Int32{http.MethodGet: {}, http.MethodPut: {}, http.MethodPost: {}}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if c, ok := n[r.Method]; ok {
				c.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg, n
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func holderOf(t *testing.T, name string) string {
	t.Helper()
	l, err := coordclient.NewForConfigOrDie(cluster.Config).Leases("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// runs numbers the Leases the tests make, so that a second run of the
// package (go test -count=2) meets none of the first's.
var runs atomic.Int64

// Release frees the Lease with one write when nobody else wrote it since
// the run did; when someone did, it reads the Lease again and frees it only
// if it is still the run's.
func TestRelease(t *testing.T) {
	ctx := context.Background()
	leases := coordclient.NewForConfigOrDie(cluster.Config).Leases("default")
	for _, tc := range []struct {
		name string
		// meanwhile writes the Lease while the run holds it.
		meanwhile func(t *testing.T, name string)
		// holder is who holds the Lease after Release; gets is how many
		// times Release read it.
		holder string
		gets   int32
	}{{
		name: "untouched", holder: "", gets: 0,
	}, {
		name: "labelled by someone",
		meanwhile: func(t *testing.T, name string) {
			l, err := leases.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.Labels = map[string]string{"touched": "yes"}
			if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		holder: "", gets: 1,
	}, {
		name: "taken over",
		meanwhile: func(t *testing.T, name string) {
			l, err := leases.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.Spec.HolderIdentity = new("another-run")
			if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		holder: "another-run", gets: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			// A name of this run's own: go test -count=2 runs it again
			// against the same cluster.
			name := fmt.Sprintf("release-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), runs.Add(1))
			cfg, n := counted()
			l, err := Acquire(ctx, cfg, Options{Namespace: "default", Name: name, Holder: "this-run", Duration: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if h := holderOf(t, name); h != "this-run" {
				t.Fatalf("held by %q after Acquire", h)
			}
			if tc.meanwhile != nil {
				tc.meanwhile(t, name)
			}
			gets := n[http.MethodGet].Load()
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if got := n[http.MethodGet].Load() - gets; got != tc.gets {
				t.Errorf("Release read the Lease %d times, want %d", got, tc.gets)
			}
			if h := holderOf(t, name); h != tc.holder {
				t.Errorf("held by %q after Release, want %q", h, tc.holder)
			}
		})
	}
}
