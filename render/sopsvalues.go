package render

import (
	"fmt"
	"strings"

	"github.com/getsops/sops/v3"

	"github.com/cronsync/cronsync/internal/redact"
)

// recordingCipher decrypts as sops's cipher does and registers every value
// it opens with the run's Secrets, so that no output shows it, whatever
// the commit does with it afterwards (kustomize `replacements:` may copy it
// into any field of any object). Only values that were encrypted are seen:
// what a file leaves in the clear (encrypted_regex, unencrypted_suffix) is
// in Git for anyone to read.
type recordingCipher struct {
	sops.Cipher
	secrets *redact.Secrets
}

func (c recordingCipher) Decrypt(ciphertext string, key []byte, additionalData string) (any, error) {
	v, err := c.Cipher.Decrypt(ciphertext, key, additionalData)
	if err == nil && !identityPath(additionalData) {
		switch v := v.(type) {
		case string:
			c.secrets.Add(v)
		case []byte:
			c.secrets.Add(string(v))
		case int, int64, float64:
			// A boolean is one bit, and masking "true" would mangle
			// every message; a number is a value like any other.
			c.secrets.Add(fmt.Sprint(v))
		}
	}
	return v, err
}

// identityPath: the value at this path (sops's additional data, the keys
// from the document's top joined and ended by ":") names the object rather
// than holds its content. A file encrypted whole encrypts these too, and
// masking them would hide which object every message is about; a value
// copied from elsewhere into a name is refused instead (see package apply).
func identityPath(additionalData string) bool {
	top, _, _ := strings.Cut(additionalData, ":")
	return top == "apiVersion" || top == "kind" || top == "metadata"
}
