package main

import (
	"fmt"
	"io"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/internal/redact"
)

// warn prints msg as warning lines, each line of it prefixed: a message
// from a template or a server that holds a newline cannot start a line
// that reads as cronsync's own.
func warn(w io.Writer, secrets *redact.Secrets, msg string) {
	for line := range strings.SplitSeq(secrets.Clean(msg), "\n") {
		fmt.Fprintf(w, "warning: %s\n", line)
	}
}

// lineWarnings keeps each of the API server's warnings (which may quote
// what the commit holds) to the one line client-go prints it on.
type lineWarnings struct{ next rest.WarningHandler }

func (w lineWarnings) HandleWarningHeader(code int, agent, text string) {
	w.next.HandleWarningHeader(code, agent, redact.CleanLine(text))
}
