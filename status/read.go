package status

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	batchv1client "k8s.io/client-go/kubernetes/typed/batch/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
)

// The ApplySet specification's parent label and tooling annotation (see
// package apply): a cronsync parent is a Secret with the label whose
// tooling is cronsync/<version>.
const (
	applySetIDLabel = "applyset.kubernetes.io/id"
	toolingAnn      = "applyset.kubernetes.io/tooling"
)

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// readCluster lists the syncs of one cluster. Its error means the cluster
// could not be read at all; what only takes a column away (CronJobs that
// may not be listed) is a warning.
func readCluster(ctx context.Context, c Cluster, opts Options) ([]Sync, []string, error) {
	ns := c.namespace(opts)
	if opts.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	md, err := metadata.NewForConfig(c.Config)
	if err != nil {
		return nil, nil, err
	}
	batch, err := batchv1client.NewForConfig(c.Config)
	if err != nil {
		return nil, nil, err
	}
	core, err := corev1client.NewForConfig(c.Config)
	if err != nil {
		return nil, nil, err
	}

	// The parents' metadata only: their data is every object's
	// fingerprint, 700 KB at 10,000 objects.
	var parents *metav1.PartialObjectMetadataList
	var cronJobs *batchv1.CronJobList
	var parentsErr, cronErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		parents, parentsErr = md.Resource(secretsGVR).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: applySetIDLabel})
	})
	wg.Go(func() {
		cronJobs, cronErr = batch.CronJobs(ns).List(ctx, metav1.ListOptions{})
	})
	wg.Wait()
	if parentsErr != nil {
		return nil, nil, fmt.Errorf("listing ApplySet parents (secrets): %w", parentsErr)
	}
	var warnings []string
	var runners map[string]*batchv1.CronJob
	if cronErr != nil {
		warnings = append(warnings, fmt.Sprintf("listing cronjobs: %v; SCHEDULE and STALE are not shown", cronErr))
	} else {
		var w []string
		runners, w = findRunners(ctx, core, cronJobs.Items)
		warnings = append(warnings, w...)
	}

	var syncs []Sync
	for _, p := range parents.Items {
		if tool, _, _ := strings.Cut(p.Annotations[toolingAnn], "/"); tool != "cronsync" {
			continue // kubectl's, or another tool's
		}
		s := fromParent(p.Namespace, p.Name, p.Annotations)
		if cj := runners[p.Namespace+"/"+p.Name]; cj != nil {
			s.CronJob = &CronJob{Namespace: cj.Namespace, Name: cj.Name, Schedule: cj.Spec.Schedule, Suspended: cj.Spec.Suspend != nil && *cj.Spec.Suspend}
			if cj.Spec.TimeZone != nil {
				s.CronJob.TimeZone = *cj.Spec.TimeZone
			}
			if t := cj.Status.LastScheduleTime; t != nil {
				s.CronJob.LastSchedule = &t.Time
			}
			stale, err := isStale(cj, s.LastSuccess, opts.Now)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("cronjob/%s -n %s: %v; STALE is not judged", cj.Name, cj.Namespace, err))
			}
			s.Stale = stale
		}
		syncs = append(syncs, s)
	}
	return syncs, warnings, nil
}

// cronsyncContainer is a container that runs cronsync: its image is named
// cronsync, or it is given a cronsync flag or variable.
func cronsyncContainer(c corev1.Container) bool {
	image := path.Base(c.Image)
	image, _, _ = strings.Cut(image, "@")
	image, _, _ = strings.Cut(image, ":")
	if image == "cronsync" {
		return true
	}
	for _, a := range slices.Concat(c.Command, c.Args) {
		if path.Base(a) == "cronsync" || strings.HasPrefix(a, "--repo") || strings.HasPrefix(a, "--applyset") {
			return true
		}
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "CRONSYNC_") {
			return true
		}
	}
	return false
}

// findRunners maps each ApplySet parent ("namespace/name") that a CronJob
// runs cronsync with to that CronJob (the first by namespace and name, if
// several do). The set is cronsync's --applyset, from the container's
// arguments, else its CRONSYNC_APPLYSET variable (set in env, or from a
// ConfigMap), else the default: cronsync in the CronJob's namespace.
func findRunners(ctx context.Context, core corev1client.CoreV1Interface, cronJobs []batchv1.CronJob) (map[string]*batchv1.CronJob, []string) {
	slices.SortFunc(cronJobs, func(a, b batchv1.CronJob) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	type candidate struct {
		cj *batchv1.CronJob
		c  corev1.Container
	}
	var candidates []candidate
	configMaps := map[string]map[string]string{} // namespace/name to data
	for i := range cronJobs {
		cj := &cronJobs[i]
		for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
			if !cronsyncContainer(c) {
				continue
			}
			candidates = append(candidates, candidate{cj, c})
			for _, src := range c.EnvFrom {
				if src.ConfigMapRef != nil {
					configMaps[cj.Namespace+"/"+src.ConfigMapRef.Name] = nil
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					configMaps[cj.Namespace+"/"+e.ValueFrom.ConfigMapKeyRef.Name] = nil
				}
			}
		}
	}
	warnings := readConfigMaps(ctx, core, configMaps)

	runners := map[string]*batchv1.CronJob{}
	for _, cand := range candidates {
		set, ok := applySetOf(cand.c, cand.cj.Namespace, configMaps)
		if !ok {
			continue
		}
		ns, name, found := strings.Cut(set, "/")
		if !found {
			ns, name = cand.cj.Namespace, set
		}
		if _, taken := runners[ns+"/"+name]; !taken {
			runners[ns+"/"+name] = cand.cj
		}
	}
	return runners, warnings
}

// readConfigMaps fills want (namespace/name to nil) with the ConfigMaps'
// data, a few at a time; one that cannot be read is left nil, with a
// warning.
func readConfigMaps(ctx context.Context, core corev1client.CoreV1Interface, want map[string]map[string]string) []string {
	var mu sync.Mutex
	var warnings []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for key := range want {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ns, name, _ := strings.Cut(key, "/")
			cm, err := core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("reading configmap/%s -n %s: %v", name, ns, err))
				return
			}
			if cm.Data == nil {
				cm.Data = map[string]string{} // read, and empty
			}
			want[key] = cm.Data
		})
	}
	wg.Wait()
	slices.Sort(warnings)
	return warnings
}

// applySetOf is the --applyset a container runs cronsync with, as pflag and
// the kubelet would resolve it; ok is false when it is "" (no ApplySet) or
// comes from where status does not read (a Secret).
func applySetOf(c corev1.Container, namespace string, configMaps map[string]map[string]string) (string, bool) {
	set, fromArgs := "", false
	args := slices.Concat(c.Command, c.Args)
	for i, a := range args {
		switch {
		case a == "--applyset" && i+1 < len(args):
			set, fromArgs = args[i+1], true
		case strings.HasPrefix(a, "--applyset="):
			set, fromArgs = strings.TrimPrefix(a, "--applyset="), true
		}
	}
	if fromArgs {
		return set, set != ""
	}
	// The kubelet's order: envFrom sources in turn, later ones winning,
	// then env, whose entries win over envFrom's.
	const key = "CRONSYNC_APPLYSET"
	value, known, found := "", true, false
	for _, src := range c.EnvFrom {
		if src.ConfigMapRef == nil {
			continue
		}
		data := configMaps[namespace+"/"+src.ConfigMapRef.Name]
		if data == nil {
			// Unread: it may set the variable or not.
			value, known, found = "", false, true
			continue
		}
		for k, v := range data {
			if src.Prefix+k == key {
				value, known, found = v, true, true
			}
		}
	}
	for _, e := range c.Env {
		if e.Name != key {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			value, known, found = e.Value, true, true
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := configMaps[namespace+"/"+ref.Name][ref.Key]
			value, known, found = v, ok, true
		default:
			known, found = false, true
		}
	}
	switch {
	case !found:
		return "cronsync", true // the flag's default
	case !known:
		return "", false
	}
	return value, value != ""
}
