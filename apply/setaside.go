package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/cronsync/cronsync/render"
)

// webhookUnreachable tells a request that failed because the API server
// could not call an admission webhook (no endpoints, connection refused,
// timeout, TLS) from one a webhook answered. The first says nothing about
// the commit: the webhook's own Deployment may be what the commit fixes. A
// webhook that answered and denied ("admission webhook ... denied the
// request") is a verdict on the object and is not matched here.
func webhookUnreachable(err error) (string, bool) {
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) {
		return "", false
	}
	const marker = `failed calling webhook "`
	msg := status.Status().Message
	i := strings.Index(msg, marker)
	if i < 0 {
		return "", false
	}
	name, _, _ := strings.Cut(msg[i+len(marker):], `"`)
	return name, true
}

// Pauses between tries of objects set aside.
const (
	blockedPoll    = 2 * time.Second
	blockedMaxPoll = 5 * time.Second
)

// retryBlocked tries the objects set aside again, a check and then a write
// each, until they pass or opts.BlockedRetry is over. What is still
// blocked then fails, naming the webhook.
func (s *syncer) retryBlocked(ctx context.Context, items []*item) {
	var blocked []*item
	for _, it := range items {
		if it.blocked != nil && it.err == nil {
			blocked = append(blocked, it)
		}
	}
	if len(blocked) == 0 {
		return
	}
	if s.opts.BlockedRetry > 0 {
		fmt.Fprintf(s.opts.Out, "trying %d objects set aside again for up to %s\n", len(blocked), s.opts.BlockedRetry)
	} else {
		fmt.Fprintf(s.opts.Out, "trying %d objects set aside once more\n", len(blocked))
	}
	deadline := time.Now().Add(s.opts.BlockedRetry)
	pause := blockedPoll
	for {
		s.each(ctx, blocked, func(ctx context.Context, it *item) {
			it.blocked, it.liveRead, it.live, it.seen, it.staleDigest = nil, false, nil, nil, false
			s.check(ctx, it)
			if it.err == nil && it.blocked == nil {
				s.write(ctx, it)
			}
		})
		var still []*item
		for _, it := range blocked {
			if it.blocked != nil {
				still = append(still, it)
				continue
			}
			s.printAll(s.results([]*item{it}))
		}
		blocked = still
		left := time.Until(deadline)
		if len(blocked) == 0 || left <= 0 || s.stop.Err() != nil {
			break
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-s.stop.Done():
		case <-t.C:
		}
		t.Stop()
		pause = min(pause*3/2, blockedMaxPoll)
	}
	for _, it := range blocked {
		it.action = ActionFailed
		it.err = objectErr(it.Object, fmt.Errorf("set aside and not written: %w", it.blocked))
		s.printAll(s.results([]*item{it}))
	}
}

// deferDependents takes back the failed checks of objects whose dry run
// needs a dependency this commit creates: like resources of a new CRD, they
// are checked right before they are written. It returns the errors of the
// other failed items.
func deferDependents(items []*item) []error {
	var errs []error
	for _, it := range items {
		if it.err == nil {
			continue
		}
		if needsNewDependency(it) {
			it.err, it.action, it.deferCheck = nil, ActionNotValidated, true
			continue
		}
		errs = append(errs, it.err)
	}
	return errs
}

// needsNewDependency: the object depends on something this commit creates,
// and its check failed with something other than a verdict on its own
// content (400, 422): an admission plugin that looks the dependency up
// (a Pod's PriorityClass, say) or a 404. Such a check is only meaningful once
// the dependency exists.
func needsNewDependency(it *item) bool {
	if apierrors.IsInvalid(it.err) || apierrors.IsBadRequest(it.err) {
		return false
	}
	if _, ok := errors.AsType[*render.ManifestError](it.err); ok {
		return false // checkClaim's refusal: the live object decided it
	}
	for _, d := range it.deps {
		if d.item != nil && d.item.action == ActionCreated {
			return true
		}
	}
	return false
}
