package apply

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// client-go's RESTMapper leaves out the API groups whose discovery failed,
// such as an aggregated API whose backend is down (metrics-server is the
// usual one), without a word. Their kinds then look unknown, which would
// call a commit wrong (exit 3) during an outage, and prune would drop such
// a kind from the ApplySet and orphan its members for good. Where a kind
// does not map, the run therefore asks which groups failed: a kind of one
// of those is unknown for now, not unknown.

// unavailableGroups returns the API groups whose discovery failed, with
// why, read once a run from the discovery cache the mapper uses.
func (s *syncer) unavailableGroups() map[string]error {
	s.groupsOnce.Do(func() {
		s.failedGroups = map[string]error{}
		_, _, err := s.disco.ServerGroupsAndResourcesWithContext(s.stop)
		var failed *discovery.ErrGroupDiscoveryFailed
		if errors.As(err, &failed) {
			for gv, why := range failed.Groups {
				s.failedGroups[gv.Group] = why
			}
		}
	})
	return s.failedGroups
}

// groupUnavailable is why gk cannot be mapped this run when its group's
// discovery failed, or nil. The cause is kept as text: whatever status the
// discovery request got, the kind is retryable (exit 1), not a fault of
// the commit.
func (s *syncer) groupUnavailable(gk schema.GroupKind) error {
	why, down := s.unavailableGroups()[gk.Group]
	if !down {
		return nil
	}
	return fmt.Errorf("the API group %s is unavailable for now (its discovery failed: %v)", gk.Group, why)
}
