package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wharf-registry/wharf/config"
)

// collector is an OTLP/HTTP trace collector: it decodes the protobuf
// export requests POSTed to /v1/traces.
type collector struct {
	*httptest.Server
	mu    sync.Mutex
	posts int
	spans []*tracepb.Span
	res   []string // service.name of each resource
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || err != nil {
			t.Errorf("collector got %s %s (%v)", r.Method, r.URL.Path, err)
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("collector: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.posts++
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					c.res = append(c.res, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			v := a.GetValue()
			if v.GetStringValue() != "" {
				return v.GetStringValue()
			}
			return strings.TrimSpace(strings.TrimPrefix(v.String(), "int_value:"))
		}
	}
	return ""
}

// pushPull pushes a random image to repo on addr and pulls it back.
func pushPull(t *testing.T, addr, repo string) {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := parseRef(t, addr+"/"+repo+":v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, rc)
		rc.Close()
	}
}

// TestTracingExportsSpans pushes and pulls through `wharf serve` with
// tracing on and checks what the collector got once serve has shut down
// (which flushes the provider).
func TestTracingExportsSpans(t *testing.T) {
	col := newCollector(t)
	addr, _, stop := startServe(t, func(c *config.Config) {
		c.Tracing = config.Tracing{Enabled: true, Endpoint: col.URL, SampleRatio: 1, ServiceName: "wharf-test"}
	})
	const repo = "tracing/secret-repo-name"
	pushPull(t, addr, repo)

	// An incoming traceparent is continued.
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/"+repo+"/tags/list", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// The batch endpoint signs a URL per blob: the signer's spans.
	resp, err = http.Get("http://" + addr + "/v2/" + repo + "/manifests/v1/blobs?expiry=600")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch: %s", resp.Status)
	}

	stop()
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.spans) == 0 {
		t.Fatal("collector got no spans")
	}
	for _, n := range col.res {
		if n != "wharf-test" {
			t.Errorf("service.name %q", n)
		}
	}
	byID := map[string]*tracepb.Span{}
	names := map[string]int{}
	for _, s := range col.spans {
		byID[hex.EncodeToString(s.SpanId)] = s
		names[s.Name]++
		if strings.Contains(s.Name, "secret-repo-name") {
			t.Errorf("span name %q has the repository", s.Name)
		}
	}
	for _, want := range []string{
		"POST /v2/{name}/blobs/uploads/", "PUT /v2/{name}/blobs/uploads/{uuid}",
		"PUT /v2/{name}/manifests/{reference}", "GET /v2/{name}/manifests/{reference}",
		"GET /v2/{name}/blobs/{digest}", "GET /v2/{name}/tags/list",
		"metadata.put_manifest", "metadata.manifest", "blob.upload_commit", "blob.open",
		"auth.authorize", "signer.sign_blob",
	} {
		if names[want] == 0 {
			t.Errorf("no span %q; got %v", want, names)
		}
	}
	var sawManifestPut, sawTraceparent bool
	for _, s := range col.spans {
		switch {
		case s.Name == "PUT /v2/{name}/manifests/{reference}":
			sawManifestPut = true
			if s.Kind != tracepb.Span_SPAN_KIND_SERVER || attr(s, "wharf.repository") != repo || attr(s, "http.route") != "/v2/{name}/manifests/{reference}" ||
				attr(s, "http.request.method") != "PUT" || attr(s, "http.response.status_code") != "201" || attr(s, "wharf.request_id") == "" {
				t.Errorf("manifest PUT span: kind %v attributes %v", s.Kind, s.Attributes)
			}
		case strings.HasPrefix(s.Name, "metadata.") || strings.HasPrefix(s.Name, "blob.") ||
			strings.HasPrefix(s.Name, "signer.") || strings.HasPrefix(s.Name, "auth."):
			p := byID[hex.EncodeToString(s.ParentSpanId)]
			if p == nil || p.Kind != tracepb.Span_SPAN_KIND_SERVER || string(p.TraceId) != string(s.TraceId) {
				t.Errorf("seam span %q has no server span parent", s.Name)
			} else if s.Name == "metadata.put_manifest" && p.Name != "PUT /v2/{name}/manifests/{reference}" {
				t.Errorf("metadata.put_manifest under %q", p.Name)
			} else if s.Name == "signer.sign_blob" && p.Name != "GET /v2/{name}/manifests/{reference}/blobs" {
				t.Errorf("signer.sign_blob under %q", p.Name)
			}
		case s.Name == "GET /v2/{name}/tags/list":
			if hex.EncodeToString(s.TraceId) == traceID {
				sawTraceparent = true
				if hex.EncodeToString(s.ParentSpanId) != parentID {
					t.Errorf("tags span parent %x, want %s", s.ParentSpanId, parentID)
				}
			}
		}
	}
	if !sawManifestPut || !sawTraceparent {
		t.Errorf("manifest PUT span %v, continued traceparent %v", sawManifestPut, sawTraceparent)
	}
}

// TestTracingOff: with tracing.enabled false nothing is exported, even
// with an endpoint set, and no tracer provider exists.
func TestTracingOff(t *testing.T) {
	col := newCollector(t)
	addr, _, stop := startServe(t, func(c *config.Config) {
		c.Tracing.Endpoint, c.Tracing.SampleRatio = col.URL, 1
	})
	pushPull(t, addr, "tracing/off")
	stop()
	col.mu.Lock()
	if col.posts != 0 || len(col.spans) != 0 {
		t.Errorf("tracing off exported %d requests, %d spans", col.posts, len(col.spans))
	}
	col.mu.Unlock()

	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		t.Error("a global tracer provider is set")
	}
}
