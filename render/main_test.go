package render

import (
	"os"
	"testing"

	"github.com/cronsync/cronsync/internal/budget"
)

// TestMain lets the test binary be the process a Jsonnet file is evaluated
// in, as the command is (JsonnetInChild): a budget test then leaves nothing
// running behind it for the tests after it to pay for.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == budget.ChildArg {
		if err := budget.Serve(os.Stdin, os.Stdout, map[string]budget.Task{JsonnetTask: ServeJsonnet}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
