package render

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// decryptSecretData opens the SOPS documents that Secrets hold as data
// values, as Flux's kustomize-controller does after its build, so that a
// repository written for Flux needs no change: a Secret written with an
// encrypted file base64-encoded in it, or generated from one the
// kustomization does not read as a file. As Flux, the document's content
// says which store it was written in and the key's name (.yaml, .json,
// .env, anything else binary) which form the plaintext takes. It runs
// on every rendered object except the record's stand-ins, before
// substitution, as Flux orders them.
func decryptSecretData(ctx context.Context, objs []*Object, d func() *decryptor) error {
	var errs []error
	for _, o := range objs {
		if o.Recorded || o.Obj == nil || o.GroupKind() != (schema.GroupKind{Kind: "Secret"}) {
			continue
		}
		data, ok := o.Obj.Object["data"].(map[string]any)
		if !ok {
			continue
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the errors in a stable order
		for _, key := range keys {
			s, ok := data[key].(string)
			if !ok {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				continue // the API server's to refuse, naming the field
			}
			// As Flux: the document's own form says how to read it,
			// the key's name what to write.
			in := sopsFormatOf(raw)
			if in == "" {
				continue
			}
			plain, err := d().decryptAs(ctx, raw, fmt.Sprintf("%s (%s), data key %q", o.Ref(), o.Source, key), in, sopsFormat(key))
			if err != nil {
				var me *ManifestError
				if errors.As(err, &me) {
					err = &ManifestError{Source: o.Source, Doc: o.Doc, Ref: o.Ref(), Err: fmt.Errorf("data key %q: %w", key, me.Err)}
				}
				errs = append(errs, err)
				continue
			}
			data[key] = base64.StdEncoding.EncodeToString(plain)
			o.Decrypted = true
		}
	}
	return errors.Join(errs...)
}

// sopsFormatOf names the store whose SOPS document data looks like, or "".
// A binary file is stored as JSON, and read as JSON alike.
func sopsFormatOf(data []byte) string {
	for _, f := range []string{"yaml", "dotenv", "json"} {
		if looksEncrypted(data, f) {
			return f
		}
	}
	return ""
}
