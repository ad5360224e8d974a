package apply

import (
	"context"
	"fmt"
)

// writeAll applies items for real, skipping the ones the check found
// unchanged, and prints one line per item in plan order.
func (s *syncer) writeAll(ctx context.Context, items []*item) {
	s.each(ctx, items, s.write)
	s.printAll(s.results(items))
}

func (s *syncer) write(ctx context.Context, it *item) {
	switch {
	case it.skip != nil:
		it.action, it.err = ActionSkipped, objectErr(it.Object, it.skip)
		return
	case it.err != nil, it.blocked != nil, it.action == ActionUnchanged:
		return
	}
	if it.Recorded {
		it.action, it.err = ActionFailed, objectErr(it.Object, errReread)
		return
	}
	if it.action == ActionRecreated {
		if err := s.recreate(ctx, it); err != nil {
			it.action, it.err = ActionFailed, objectErr(it.Object, err)
		}
		return
	}
	applied, err := s.client(it).Apply(ctx, it.Obj.GetName(), it.Obj, s.applyOptions(false))
	if err != nil {
		if it.validated {
			err = refusedAfterCheck(err)
		}
		it.action, it.err = ActionFailed, objectErr(it.Object, err)
		return
	}
	s.confirm(it, applied)
}

// writeStage writes items in waves so that an object annotated
// config.kubernetes.io/depends-on comes after what it names, once that is
// ready. An object whose check had to wait for a dependency is checked
// right before its wave.
func (s *syncer) writeStage(ctx context.Context, items []*item) {
	for _, wave := range waves(items) {
		targets := s.dependencyTargets(wave)
		if len(targets) > 0 && s.opts.Ready != nil && s.stop.Err() == nil {
			if err := s.opts.Ready(ctx, targets); err != nil {
				for _, it := range wave {
					if len(it.deps) > 0 && it.skip == nil {
						it.skip = fmt.Errorf("not written: what it depends on is not ready: %w", err)
					}
				}
			}
		}
		var deferred []*item
		for _, it := range wave {
			if it.deferCheck && it.skip == nil {
				deferred = append(deferred, it)
			}
		}
		s.each(ctx, deferred, s.check)
		s.writeAll(ctx, wave)
	}
}
