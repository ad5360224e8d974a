package chart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
	"sigs.k8s.io/yaml"
)

// maxIndexBytes bounds a repository's index.yaml; big public ones are tens
// of MB.
const maxIndexBytes = 128 << 20

// fetch downloads one chart archive: from a Helm repository by its
// index.yaml, or from an OCI registry anonymously. Only chart bytes are
// fetched; nothing is cached, and no Helm plugin or credentials helper runs.
func (r *Renderer) fetch(ctx context.Context, rm Remote) ([]byte, error) {
	if strings.HasPrefix(rm.Repo, "oci://") {
		return r.fetchOCI(ctx, rm)
	}
	base, err := url.Parse(strings.TrimSuffix(rm.Repo, "/") + "/")
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") {
		return nil, fmt.Errorf("chart repository %q: not an http(s):// or oci:// URL", rm.Repo)
	}
	data, err := r.get(ctx, base.JoinPath("index.yaml").String(), nil, maxIndexBytes)
	if err != nil {
		return nil, err
	}
	var index struct {
		Entries map[string][]struct {
			Version string   `json:"version"`
			URLs    []string `json:"urls"`
		} `json:"entries"`
	}
	if err := yaml.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("%sindex.yaml: %w", base, err)
	}
	constraint := "*"
	if rm.Version != "" {
		constraint = rm.Version
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return nil, fmt.Errorf("chart version %q: %w", rm.Version, err)
	}
	var best *semver.Version
	var bestURL string
	for _, e := range index.Entries[rm.Name] {
		v, err := semver.NewVersion(e.Version)
		if err != nil || len(e.URLs) == 0 || !c.Check(v) || (best != nil && !v.GreaterThan(best)) {
			continue
		}
		best, bestURL = v, e.URLs[0]
	}
	if best == nil {
		return nil, fmt.Errorf("chart %s: no version matching %q in %sindex.yaml", rm.Name, constraint, base)
	}
	u, err := base.Parse(bestURL)
	if err != nil {
		return nil, fmt.Errorf("chart %s %s: URL %q: %w", rm.Name, best, bestURL, err)
	}
	return r.get(ctx, u.String(), nil, r.archiveLimit())
}

func (r *Renderer) archiveLimit() int64 {
	if r.opts.MaxFileBytes > 0 {
		return r.opts.MaxFileBytes
	}
	return 100 << 20
}

const (
	ociManifest   = "application/vnd.oci.image.manifest.v1+json"
	helmChartBlob = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// fetchOCI pulls a chart pushed with `helm push`, as an anonymous client of
// the distribution API: manifest by tag, then the chart layer.
func (r *Renderer) fetchOCI(ctx context.Context, rm Remote) ([]byte, error) {
	ref := strings.TrimSuffix(strings.TrimPrefix(rm.Repo, "oci://"), "/") + "/" + rm.Name
	host, repo, ok := strings.Cut(ref, "/")
	if !ok || rm.Version == "" {
		return nil, fmt.Errorf("chart %s: an OCI chart needs a registry path and an exact version", rm)
	}
	reg := &registry{r: r, host: host, repo: repo}
	data, err := reg.get(ctx, "/manifests/"+url.PathEscape(rm.Version), ociManifest, 4<<20)
	if err != nil {
		return nil, err
	}
	var manifest struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(data, &manifest); err != nil {
		return nil, fmt.Errorf("chart %s: manifest: %w", rm, err)
	}
	for _, l := range manifest.Layers {
		if l.MediaType == helmChartBlob {
			return reg.get(ctx, "/blobs/"+l.Digest, "", r.archiveLimit())
		}
	}
	return nil, fmt.Errorf("chart %s: the OCI artifact holds no Helm chart layer", rm)
}

type registry struct {
	r          *Renderer
	host, repo string
	token      string
}

var bearerParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// get asks the registry, taking an anonymous token once if it asks for one.
func (g *registry) get(ctx context.Context, p, accept string, limit int64) ([]byte, error) {
	u := "https://" + g.host + "/v2/" + g.repo + p
	hdr := http.Header{}
	if accept != "" {
		hdr.Set("Accept", accept)
	}
	if g.token != "" {
		hdr.Set("Authorization", "Bearer "+g.token)
	}
	data, err := g.r.get(ctx, u, hdr, limit)
	var unauth *unauthorized
	if !errors.As(err, &unauth) || g.token != "" {
		return data, err
	}
	params := map[string]string{}
	for _, m := range bearerParam.FindAllStringSubmatch(unauth.challenge, -1) {
		params[m[1]] = m[2]
	}
	if !strings.HasPrefix(strings.ToLower(unauth.challenge), "bearer ") || params["realm"] == "" {
		return nil, err
	}
	q := url.Values{}
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	q.Set("scope", "repository:"+g.repo+":pull")
	tok, err := g.r.get(ctx, params["realm"]+"?"+q.Encode(), nil, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("anonymous token for %s: %w", g.host, err)
	}
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(tok, &t); err != nil {
		return nil, fmt.Errorf("anonymous token for %s: %w", g.host, err)
	}
	if g.token = t.Token; g.token == "" {
		g.token = t.AccessToken
	}
	return g.get(ctx, p, accept, limit)
}

type unauthorized struct{ url, challenge string }

func (e *unauthorized) Error() string { return "GET " + e.url + ": 401 Unauthorized" }

// get reads one URL, refusing bodies over limit.
func (r *Renderer) get(ctx context.Context, u string, hdr http.Header, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := r.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, &unauthorized{url: u, challenge: resp.Header.Get("WWW-Authenticate")}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("GET %s: over %d bytes", u, limit)
	}
	return data, nil
}
