package lease

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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

// A run whose renewals fail stops writing at two thirds of the Lease's
// duration, before another run may take it at the end of it, and a write
// the server has not answered by five sixths is cut off. (The chaos
// harness found runs writing past their Lease: bench/chaos, seed 7,
// trials 4 and 6.)
func TestFence(t *testing.T) {
	ctx := context.Background()
	name := fmt.Sprintf("fence-%d", runs.Add(1))
	var renewals atomic.Bool
	renewals.Store(true)
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/leases/") && !renewals.Load() {
				return nil, errors.New("renewal blocked by the test")
			}
			return rt.RoundTrip(r)
		})
	})
	const d = 3 * time.Second
	l, err := Acquire(ctx, cfg, Options{Namespace: "default", Name: name, Holder: "fenced-run", Duration: d})
	if err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	renewals.Store(false)
	defer l.Release(ctx) //nolint:errcheck // the test's Lease, in its own name

	// Writes go through the fence; the server answers them late while
	// slow is set.
	var slow atomic.Bool
	wcfg := rest.CopyConfig(cluster.Config)
	wcfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if slow.Load() {
				select {
				case <-time.After(5 * time.Second):
				case <-r.Context().Done():
					return nil, r.Context().Err()
				}
			}
			return rt.RoundTrip(r)
		})
	})
	wcfg.Wrap(l.Fence)
	cms := kubernetes.NewForConfigOrDie(wcfg).CoreV1().ConfigMaps("default")
	cm := func(suffix string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + suffix}}
	}
	if _, err := cms.Create(ctx, cm("early"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a write right after the Lease was taken: %v", err)
	}

	time.Sleep(time.Until(taken.Add(d / 2)))
	slow.Store(true)
	_, err = cms.Create(ctx, cm("slow"), metav1.CreateOptions{})
	cut := time.Since(taken)
	slow.Store(false)
	if !errors.Is(err, context.DeadlineExceeded) || cut > d*5/6+500*time.Millisecond {
		t.Errorf("a write still unanswered at five sixths of the Lease ended %s after it was taken with %v; want cut off by %s", cut, err, d*5/6)
	}

	select {
	case <-l.Lost():
	case <-time.After(d):
		t.Fatal("Lost was not closed once the Lease could not be renewed")
	}
	if lost := time.Since(taken); lost > d*2/3+500*time.Millisecond {
		t.Errorf("Lost closed %s after the Lease was taken, want by %s", lost, d*2/3)
	}
	_, err = cms.Create(ctx, cm("late"), metav1.CreateOptions{})
	if !errors.Is(err, ErrLost) {
		t.Errorf("a write once the Lease was lost: %v, want ErrLost", err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cluster.Config).CoreV1().ConfigMaps("default").Get(ctx, name+"-late", metav1.GetOptions{}); err == nil {
		t.Error("the write refused reached the server")
	}
	// Reads are not the fence's business.
	if _, err := cms.Get(ctx, name+"-early", metav1.GetOptions{}); err != nil {
		t.Errorf("a read once the Lease was lost: %v", err)
	}
}
