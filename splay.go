package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/apply"
)

// A fleet's CronJobs share one schedule, and every cluster would ask the
// Git server for the same commit in the same second. --splay spreads them:
// a scheduled run waits a fixed offset within [0, --splay) before its first
// request to Git. The offset comes from the ApplySet parent's UID, which
// the API server made unique when this cluster's first sync created it, and
// which stays from run to run: each cluster keeps its own slot, and a
// fleet's slots are spread evenly (a hash of the UID).
//
// Only a run the CronJob scheduled waits. The pod knows its own name
// (POD_NAME, from the downward API in manifests/), and so its Job's: the
// pods of a Job are named after it, plus "-" and five characters. The
// CronJob names the Jobs it schedules after itself and the minute they
// were scheduled for ("cronsync-29416385"); a Job made by hand (`kubectl
// create job --from=cronjob/cronsync sync-now`) has the name it was given.
// So a run waits when its Job's name ends in a minute count no later than
// now and within the last hour. A dry run never waits, nor a run outside a
// pod (no POD_NAME: a laptop), nor a cluster's first sync (no parent yet).

// splayOffset is uid's slot in [0, splay).
func splayOffset(uid string, splay time.Duration) time.Duration {
	sum := sha256.Sum256([]byte("cronsync-splay\x00" + uid))
	// 53 bits: exactly a float64's fraction.
	frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
	return time.Duration(frac * float64(splay))
}

// scheduledJob says whether the pod named pod belongs to a Job its CronJob
// scheduled, and why not when it does not.
func scheduledJob(pod string, now time.Time) (bool, string) {
	if pod == "" {
		return false, "not in a pod (no POD_NAME)"
	}
	i := strings.LastIndexByte(pod, '-')
	if i <= 0 {
		return false, fmt.Sprintf("pod %s is not a Job's", pod)
	}
	job := pod[:i]
	j := strings.LastIndexByte(job, '-')
	minute, err := strconv.ParseInt(job[j+1:], 10, 64)
	if j <= 0 || err != nil {
		return false, fmt.Sprintf("Job %s was started by hand, not by its CronJob", job)
	}
	scheduled := time.Unix(minute*60, 0)
	if scheduled.After(now.Add(time.Minute)) || now.Sub(scheduled) > time.Hour {
		return false, fmt.Sprintf("Job %s was started by hand, not by its CronJob (%s is not a schedule of the last hour)", job, scheduled.UTC().Format(time.RFC3339))
	}
	return true, ""
}

// splayWait waits this cluster's --splay offset, or says why the run does
// not.
func splayWait(ctx context.Context, cfg *config, restCfg *rest.Config, parent apply.ApplySet, out io.Writer) error {
	if cfg.splay <= 0 {
		return nil
	}
	skip := func(why string) error {
		fmt.Fprintf(out, "cronsync: not waiting for --splay: %s\n", why)
		return nil
	}
	if cfg.apply.DryRun != apply.DryRunNone {
		return skip("a dry run")
	}
	if ok, why := scheduledJob(os.Getenv("POD_NAME"), time.Now()); !ok {
		return skip(why)
	}
	if parent.Name == "" {
		return skip("no --applyset, whose parent's UID gives the cluster its slot")
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	secret, err := cs.CoreV1().Secrets(parent.Namespace).Get(ctx, parent.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return skip(fmt.Sprintf("ApplySet parent %s/%s does not exist yet (the first sync creates it)", parent.Namespace, parent.Name))
	case err != nil:
		// The run meets the API server again soon and says what is wrong
		// then; a slot is not worth failing for.
		return skip(fmt.Sprintf("reading ApplySet parent %s/%s: %v", parent.Namespace, parent.Name, err))
	}
	wait := splayOffset(string(secret.UID), cfg.splay)
	fmt.Fprintf(out, "cronsync: waiting %s before fetching: this cluster's slot in --splay %s (from ApplySet parent %s/%s's UID)\n",
		wait.Round(time.Millisecond), cfg.splay, parent.Namespace, parent.Name)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopped while waiting for --splay: %w", context.Cause(ctx))
	}
}
