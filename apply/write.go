package apply

import "context"

// writeAll applies items for real, skipping the ones the check found
// unchanged, and prints one line per item in plan order.
func (s *syncer) writeAll(ctx context.Context, items []*item) {
	s.each(ctx, items, s.write)
	for _, r := range s.results(items) {
		s.print(r)
	}
}

func (s *syncer) write(ctx context.Context, it *item) {
	switch {
	case it.skip != nil:
		it.action, it.err = ActionSkipped, objectErr(it.Object, it.skip)
		return
	case it.err != nil, it.action == ActionUnchanged:
		return
	}
	if _, err := s.client(it).Apply(ctx, it.Obj.GetName(), it.Obj, s.applyOptions(false)); err != nil {
		it.action, it.err = ActionFailed, objectErr(it.Object, err)
	}
}
