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
// kustomization does not read as a file. The key's name decides the store
// (.yaml, .json, .env, anything else binary), as a file's name does for
// sops, and the value becomes the plaintext in that store's form. It runs
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
			format := sopsFormat(key)
			if !looksEncrypted(raw, format) {
				if other := sopsFormatOf(raw); other != "" {
					// Applied still encrypted, the Secret would be
					// useless in a way nobody notices until the app
					// reads it.
					errs = append(errs, &ManifestError{Source: o.Source, Doc: o.Doc, Ref: o.Ref(),
						Err: fmt.Errorf("data key %q holds a SOPS-encrypted %s document, but a key of this name is read as %s: end the key's name in the extension sops encrypted it with (.yaml, .json, .env)", key, other, format)})
				}
				continue
			}
			plain, err := d().decrypt(ctx, raw, fmt.Sprintf("%s (%s), data key %q", o.Ref(), o.Source, key), format)
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
func sopsFormatOf(data []byte) string {
	for _, f := range []string{"yaml", "dotenv", "json"} {
		if looksEncrypted(data, f) {
			return f
		}
	}
	return ""
}
