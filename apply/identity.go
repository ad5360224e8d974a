package apply

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cronsync/cronsync/internal/redact"
	"github.com/cronsync/cronsync/render"
)

// checkIdentity refuses every object whose identity holds a value
// decrypted from a SOPS file: a kustomize `replacements:` can copy a
// password into a ConfigMap's name. Masking cannot protect it there: the
// name is what every line about the object prints, what the cluster shows
// anyone who may list ConfigMaps, and what a dry run reports created. The
// value is never printed; the object's ref is, masked. Only values of at
// least redact.IdentityMinLen bytes count, so that a Deployment that
// happens to be named like a short value is not refused for it.
func checkIdentity(secrets *redact.Secrets, objs []*render.Object) error {
	if secrets.Len() == 0 {
		return nil
	}
	var errs []error
	for _, o := range objs {
		md := o.Obj
		var fields []string
		for _, f := range []struct{ name, value string }{
			{"metadata.name", md.GetName()},
			{"metadata.generateName", md.GetGenerateName()},
			{"metadata.namespace", md.GetNamespace()},
		} {
			if secrets.Contains(f.value) {
				fields = append(fields, f.name)
			}
		}
		if slices.ContainsFunc(slices.Collect(maps.Keys(md.GetLabels())), secrets.Contains) {
			fields = append(fields, "a key of metadata.labels")
		}
		if slices.ContainsFunc(slices.Collect(maps.Keys(md.GetAnnotations())), secrets.Contains) {
			fields = append(fields, "a key of metadata.annotations")
		}
		for _, f := range fields {
			errs = append(errs, manifestErr(o, fmt.Errorf("%s holds a value decrypted from a SOPS-encrypted file; refused, since a name or key is shown in the clear by every message and by the cluster (copied there by a kustomize replacement or a template?)", f)))
		}
	}
	return errors.Join(errs...)
}
