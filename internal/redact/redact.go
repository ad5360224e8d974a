// Package redact keeps what must not be seen out of everything cronsync
// prints, records or posts. A repository is written by whoever can merge to
// it, and a Git or API server answers with what it likes, so every line that
// leaves the process goes through one Secrets, which
//
//   - masks every value registered with it (the plaintext of SOPS-encrypted
//     files) in every form it comes back in: raw, Go- and JSON-quoted,
//     YAML-escaped, base64, line by line for a multi-line value;
//   - strips the password (and an HTTP(S) user, often a token) from
//     anything URL-like, whether it parses as a URL or not;
//   - escapes control characters (C0 but newline and tab, DEL, C1, invalid
//     UTF-8, bidirectional overrides, line separators) visibly, as Go
//     quotes them (\r, \x1b, \u202e), so that nothing a repository or a
//     server wrote can move the cursor, rewrite a line or forge one of
//     cronsync's own; a field that is one line (a ref name, a reason) has
//     its newlines escaped too.
//
// Values are registered while the commit is rendered; the masking is built
// once, when it is first needed after the last one, and text with no
// registered value, no URL and no control byte is returned as it is.
package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// MinLen is the shortest value masked: replacing every "a" would make
// messages unreadable, and a secret that short protects nothing.
const MinLen = 3

// IdentityMinLen is the shortest value that Contains finds in an object's
// identity (name, namespace, label and annotation keys). Shorter values are
// masked where they are printed, but a Deployment named like one (a
// username "app", a port "5432") is not refused for it.
const IdentityMinLen = 8

// Mask is what a registered value is replaced with.
const Mask = "***"

// userinfoMask replaces a password in a URL, as net/url's Redacted does.
const userinfoMask = "xxxxx"

// Secrets is a run's registry of values that must never be seen. The zero
// value and nil hold none; every method may be called from any goroutine.
type Secrets struct {
	mu     sync.Mutex
	values map[string]bool
	// built is the masking for values as they are now; nil until needed
	// after a change.
	built atomic.Pointer[masking]
}

// masking is what the registered values compile to.
type masking struct {
	// replacer replaces every form of every value with Mask; nil when no
	// value is registered.
	replacer *strings.Replacer
	// identity finds the raw values of at least IdentityMinLen bytes; nil
	// when there are none.
	identity *strings.Replacer
}

// New returns an empty registry.
func New() *Secrets { return &Secrets{} }

// Add registers values. A multi-line value is registered line by line as
// well (an error may quote one line of it, a YAML block shows it indented),
// and a value that is base64 (a Secret's data) decoded as well.
func (s *Secrets) Add(values ...string) {
	if s == nil || len(values) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]bool{}
	}
	added := false
	add := func(v string) {
		if maskable(v) && !s.values[v] {
			s.values[v] = true
			added = true
		}
	}
	for _, v := range values {
		add(v)
		if strings.ContainsAny(v, "\r\n") {
			for line := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
				add(strings.TrimSpace(line))
			}
		}
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			add(string(b))
		}
	}
	if added {
		s.built.Store(nil)
	}
}

// maskable: a value that can be masked. One made of nothing but the mask's
// own character and spaces cannot be told apart from the mask, and
// replacing it would mangle every line.
func maskable(v string) bool {
	return len(v) >= MinLen && strings.TrimLeft(v, "* \t\r\n") != ""
}

// Len is how many values are registered, forms and lines aside.
func (s *Secrets) Len() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

// masking returns the compiled values, building them once after a change.
func (s *Secrets) masking() *masking {
	if s == nil {
		return nil
	}
	if m := s.built.Load(); m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.built.Load(); m != nil {
		return m
	}
	m := &masking{}
	seen := map[string]bool{}
	var all, ident []string
	for v := range s.values {
		for _, f := range Forms(v) {
			if !seen[f] {
				seen[f] = true
				all = append(all, f)
			}
		}
		if len(v) >= IdentityMinLen {
			ident = append(ident, v)
		}
	}
	m.replacer = replacer(all, Mask)
	m.identity = replacer(ident, "")
	s.built.Store(m)
	return m
}

// replacer replaces every one of patterns with to, the longest first where
// two start at the same place (strings.Replacer tries them in argument
// order): a value that contains another goes whole.
func replacer(patterns []string, to string) *strings.Replacer {
	if len(patterns) == 0 {
		return nil
	}
	slices.SortFunc(patterns, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	args := make([]string, 0, 2*len(patterns))
	for _, p := range patterns {
		args = append(args, p, to)
	}
	return strings.NewReplacer(args...)
}

// Forms are the ways v may come back in a message: as it is, quoted by Go
// (the API server's %q of a refused value), by JSON with and without HTML
// escapes and quoted twice (a JSON document inside a message), by YAML,
// escaped as this package escapes control characters, and in base64
// (standard and URL alphabets, padded or not).
func Forms(v string) []string {
	out := []string{v}
	add := func(f string) {
		if len(f) >= MinLen && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	unquote := func(q string) string {
		if len(q) >= 2 && (q[0] == '"' && q[len(q)-1] == '"' || q[0] == '\'' && q[len(q)-1] == '\'') {
			return q[1 : len(q)-1]
		}
		return q
	}
	add(unquote(strconv.Quote(v)))
	add(unquote(strconv.QuoteToASCII(v)))
	if j, err := json.Marshal(v); err == nil {
		add(unquote(string(j)))
		if jj, err := json.Marshal(unquote(string(j))); err == nil {
			add(unquote(string(jj)))
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		add(unquote(strings.TrimSuffix(b.String(), "\n")))
	}
	if y, err := yaml.Marshal(v); err == nil {
		if y := strings.TrimSuffix(string(y), "\n"); !strings.Contains(y, "\n") {
			add(unquote(y))
		}
	}
	add(strings.ReplaceAll(v, "'", "''"))
	add(escape(v, false))
	add(escape(v, true))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		add(enc.EncodeToString([]byte(v)))
	}
	return out
}

// Contains reports whether s holds a registered value of at least
// IdentityMinLen bytes, as it was registered.
func (s *Secrets) Contains(str string) bool {
	m := s.masking()
	return m != nil && m.identity != nil && m.identity.Replace(str) != str
}

// Clean returns text fit to print, record or post: registered values
// masked, URL credentials removed and control characters escaped; newlines
// and tabs are kept.
func (s *Secrets) Clean(text string) string { return s.clean(text, false) }

// CleanLine is Clean for what must stay one line: newlines are escaped too.
func (s *Secrets) CleanLine(text string) string { return s.clean(text, true) }

// Clean is Secrets.Clean with no value registered.
func Clean(text string) string { return (*Secrets)(nil).Clean(text) }

// CleanLine is Secrets.CleanLine with no value registered.
func CleanLine(text string) string { return (*Secrets)(nil).CleanLine(text) }

func (s *Secrets) clean(text string, line bool) string {
	m := s.masking()
	if m != nil && m.replacer == nil {
		m = nil
	}
	hasURL := strings.Contains(text, "://") || strings.Contains(text, `:\/\/`)
	if m == nil && !hasURL && !needsEscape(text, line) {
		return text
	}
	if hasURL {
		text = Userinfo(text)
	}
	// Masking comes first, on the text as it came; escaping may then show
	// a value's escaped form, and masking may join what is left into
	// another: until neither changes anything. Each round that masks
	// replaces at least one character that is not the mask's with the
	// mask, so it ends.
	for {
		next := text
		if m != nil {
			next = m.replacer.Replace(next)
		}
		next = escape(next, line)
		if next == text {
			return text
		}
		text = next
	}
}

// needsEscape: text holds a byte that escape changes. Any byte from 0x80
// may start a rune to escape (or be invalid UTF-8): those lines take the
// slower, rune by rune look.
func needsEscape(text string, line bool) bool {
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '\n':
			if line {
				return true
			}
		case c == '\t':
		case c < 0x20 || c >= 0x7f:
			return true
		}
	}
	return false
}

// escape writes every rune that could move a terminal's cursor, start a
// line or reverse the text as Go quotes it: \r, \x1b, \u0085, \u202e; an
// invalid byte as \xNN. line escapes newlines too.
func escape(text string, line bool) string {
	if !needsEscape(text, line) {
		return text
	}
	var b strings.Builder
	b.Grow(len(text) + 16)
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(text[i])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(text[i])&0xf, 16))
		case r == '\n' && !line, r == '\t', !isControl(r):
			b.WriteString(text[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// isControl: a rune a terminal or a viewer acts on rather than shows.
func isControl(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true // bidirectional marks, embeddings, overrides and isolates
	case r == 0x2028, r == 0x2029:
		return true // line and paragraph separators
	}
	return false
}

// Writer is a line-oriented io.Writer that cleans what it passes on: whole
// lines are cleaned together, and a line written in pieces is held until it
// ends (or Flush). It is safe for concurrent use.
type Writer struct {
	s  *Secrets
	mu sync.Mutex
	w  io.Writer
	// tail is the start of a line not yet ended.
	tail []byte
}

// maxTail is the most of an unended line held back.
const maxTail = 64 << 10

// Writer returns w, cleaned with s.
func (s *Secrets) Writer(w io.Writer) *Writer { return &Writer{s: s, w: w} }

// Write cleans every whole line in p, with what was held of the first, and
// writes them at once; it holds the rest.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := bytes.LastIndexByte(p, '\n') + 1
	if end == 0 && len(w.tail)+len(p) < maxTail {
		w.tail = append(w.tail, p...)
		return len(p), nil
	}
	if end == 0 {
		end = len(p)
	}
	text := string(w.tail) + string(p[:end])
	w.tail = append(w.tail[:0], p[end:]...)
	if _, err := io.WriteString(w.w, w.s.Clean(text)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what is held of an unended line.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) == 0 {
		return nil
	}
	text := string(w.tail)
	w.tail = w.tail[:0]
	_, err := io.WriteString(w.w, w.s.Clean(text))
	return err
}

// Userinfo removes credentials from every URL-like part of text, parsed or
// not: a password (`ssh://git:xxxxx@host`), and the user of an HTTP(S) URL,
// since a token is often given that way (`https://xxxxx:xxxxx@host`,
// `https://xxxxx@host`). A URL here is a scheme and "://"; its userinfo is
// what precedes the last "@" of its authority, which ends at the path
// ("/", "?", "#"), a space or a quote: a bad escape, port or bracket does
// not stop it. An SSH user is no secret and is kept. A password holding a
// raw "/" cannot be told from a host and a path with an "@" in it
// (`https://host:8443/repo@v1`, `oci://registry/chart@sha256:...`): the
// caller registers the credentials of the URLs it is given (URLSecrets).
func Userinfo(text string) string {
	var b strings.Builder
	rest := text
	for {
		i, sep := indexSep(rest)
		if i < 0 {
			break
		}
		scheme := schemeBefore(rest[:i])
		start := i + len(sep)
		end := start + strings.IndexFunc(rest[start:], endsAuthority)
		if end < start {
			end = len(rest)
		}
		user, pass, ok := splitUserinfo(rest[start:end])
		b.WriteString(rest[:start])
		switch {
		case !ok || scheme == "":
			b.WriteString(rest[start:end])
		case isHTTP(scheme):
			// The user too: a token is often given as the user, with a
			// placeholder password (x-oauth-basic).
			b.WriteString(userinfoMask)
			if pass {
				b.WriteString(":" + userinfoMask)
			}
			b.WriteString(rest[start+len(userinfoOf(rest[start:end])) : end])
		case pass:
			b.WriteString(user)
			b.WriteString(":" + userinfoMask)
			b.WriteString(rest[start+len(userinfoOf(rest[start:end])) : end])
		default:
			b.WriteString(rest[start:end])
		}
		rest = rest[end:]
	}
	if b.Len() == 0 {
		return text
	}
	b.WriteString(rest)
	return b.String()
}

// URLSecrets are the credentials in u, a URL given to cronsync: what
// precedes its last "@", when the part before the first ":" there is a user
// (holds no "/"), since a password may hold a raw "/" that url.Parse and
// Userinfo take for the path. They are the password, raw and percent-decoded, or the user
// of an HTTP(S) URL without one. A caller registers them, so that they are
// masked wherever they show, even outside a URL.
func URLSecrets(u string) []string {
	i, sep := indexSep(u)
	if i < 0 {
		return nil
	}
	scheme := schemeBefore(u[:i])
	// All of u is the URL: a space in a password that git cannot use
	// either does not end it.
	rest := u[i+len(sep):]
	info := userinfoOf(rest)
	user, pass, ok := splitUserinfo(rest)
	var secret string
	switch {
	case !ok:
		return nil
	case pass:
		secret = info[len(user)+1:]
	case isHTTP(scheme):
		secret = info
	default:
		return nil
	}
	out := []string{secret}
	if dec, err := pctDecode(secret); err == nil && dec != secret {
		out = append(out, dec)
	}
	return out
}

// indexSep finds the next "://", or ":\/\/" as some JSON encoders write it.
func indexSep(s string) (int, string) {
	i, j := strings.Index(s, "://"), strings.Index(s, `:\/\/`)
	switch {
	case i < 0 && j < 0:
		return -1, ""
	case j < 0 || i >= 0 && i < j:
		return i, "://"
	}
	return j, `:\/\/`
}

// schemeBefore is the URL scheme that ends s, "" if none.
func schemeBefore(s string) string {
	i := len(s)
	for i > 0 {
		c := s[i-1]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.' {
			i--
			continue
		}
		break
	}
	return s[i:]
}

func isHTTP(scheme string) bool {
	return strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")
}

// endsAuthority: a character no URL's authority in a message runs past;
// "\" starts the "\/" of a JSON-escaped path.
func endsAuthority(r rune) bool {
	switch r {
	case '/', '?', '#', '\\', ' ', '\t', '\n', '\r', '"', '\'', '`', '<', '>':
		return true
	}
	return false
}

// userinfoOf is what precedes the last "@" of rest, the part of a URL after
// "://"; "" if it has none.
func userinfoOf(rest string) string {
	if i := strings.LastIndexByte(rest, '@'); i > 0 {
		return rest[:i]
	}
	return ""
}

// splitUserinfo reads the userinfo of rest: ok when there is one, pass when
// it holds a password after the user. A userinfo whose part before the
// first ":" holds a "/" is a host and a path with an "@" in it, not a user.
func splitUserinfo(rest string) (user string, pass, ok bool) {
	info := userinfoOf(rest)
	if info == "" {
		return "", false, false
	}
	user, _, pass = strings.Cut(info, ":")
	if strings.ContainsRune(user, '/') {
		return "", false, false
	}
	return user, pass, true
}

// pctDecode undoes percent-encoding; an error for an invalid escape.
func pctDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", strconv.ErrSyntax
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}
