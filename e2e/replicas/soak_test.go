package replicas

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/internal/pgtest"
	"github.com/wharf-registry/wharf/internal/tmpfstest"
	"github.com/wharf-registry/wharf/oci"
)

// TestSoak runs mixed push, pull, tag, delete and GC through two replicas
// behind HAProxy (health check /readyz, as docs/scale-out.md deploys it) while it
// injects faults: kill -9 of a replica, a PostgreSQL restart, a MinIO
// restart (S3) or a full disk (filesystem, a 64 MiB tmpfs). Then every
// acknowledged write must read back and verify, nothing half-written may
// be visible, every failed answer must carry an OCI error body and none
// may be a 500. Short by default (one round of faults per store);
// WHARFDEV_SOAK=10m runs rounds for that long per store.
func TestSoak(t *testing.T) {
	total := time.Duration(0) // one round of faults
	if v := os.Getenv("WHARFDEV_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("WHARFDEV_SOAK=%q: %v", v, err)
		}
		total = d
	}
	for _, storage := range []string{"filesystem", "s3"} {
		t.Run(storage, func(t *testing.T) { soak(t, storage, total) })
	}
}

// Fault timings: how long a fault lasts and how long the registry runs
// undisturbed between faults.
const (
	faultHold = 3 * time.Second
	calm      = 2 * time.Second
)

func soak(t *testing.T, storage string, total time.Duration) {
	pg := pgtest.Private(t)
	o := options{pg: pg, check: "/readyz", env: []string{
		"WHARF_GC_INTERVAL=2s", "WHARF_GC_REVIEW_DELAY=2s", "WHARF_HTTP_DRAIN_DELAY=0s"}}
	if storage == "filesystem" {
		o.blobs = tmpfstest.Mount(t, 64<<20)
	}
	c := startWith(t, storage, o)
	s := &soakRun{t: t, c: c, st: newSoakStats(), live: map[string]*image{}}
	s.waitReady(30 * time.Second)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 5 {
		w := &worker{s: s, rng: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))), id: i, direct: i == 4}
		wg.Add(1)
		go func() { defer wg.Done(); w.loop(ctx) }()
	}
	faults := []string{"kill-replica", "postgres-restart"}
	if storage == "s3" {
		faults = append(faults, "minio-restart")
	} else {
		faults = append(faults, "disk-full")
	}
	began := time.Now()
	for round := 0; round == 0 || time.Since(began) < total; round++ {
		for i, f := range faults {
			s.st.setPhase("calm")
			time.Sleep(calm)
			s.inject(f, round*len(faults)+i)
		}
	}
	s.st.setPhase("calm")
	time.Sleep(calm)
	stop()
	wg.Wait()
	s.st.setPhase("final")
	s.verify()
	s.report(time.Since(began))
}

type soakRun struct {
	t  *testing.T
	c  *cluster
	st *soakStats

	mu      sync.Mutex
	live    map[string]*image // by repo@digest: acknowledged, not being deleted
	deleted []*image          // acknowledged deletes: must be gone
	tried   []attempt         // every blob and manifest a push tried
	seq     int
}

type image struct {
	repo     string
	digest   digest.Digest
	manifest []byte
	blobs    []digest.Digest
	tags     []string
	tagging  int // tag PUTs in flight: a delete now would race them
}

// attempt is content a push sent, acknowledged or not: at the end it is
// either absent or whole.
type attempt struct {
	repo, tag string
	d         digest.Digest
	manifest  bool
}

func (s *soakRun) next() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// inject runs one fault from start to healed.
func (s *soakRun) inject(f string, n int) {
	t, c := s.t, s.c
	s.st.fault(f)
	var readyzDuring string
	probe := func() { // is a replica's /readyz honest during the fault?
		time.Sleep(faultHold / 2)
		readyzDuring = strconv.Itoa(status("http://" + c.a.addr + "/readyz"))
	}
	switch f {
	case "kill-replica":
		r := []*replica{c.a, c.b}[n%2]
		if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-r.done
		time.Sleep(faultHold / 2)
		r.run(t)
	case "postgres-restart":
		c.pg.Down()
		probe()
		time.Sleep(faultHold / 2)
		if err := c.pg.Up(); err != nil {
			t.Fatal(err)
		}
	case "minio-restart":
		c.minio.Down()
		probe()
		time.Sleep(faultHold / 2)
		if err := c.minio.Up(context.Background()); err != nil {
			t.Fatal(err)
		}
	case "disk-full":
		free := tmpfstest.Fill(t, filepath.Clean(s.blobRoot()))
		probe()
		time.Sleep(faultHold / 2)
		free()
	}
	s.st.setPhase(f + " (recovering)")
	healed := time.Now()
	s.waitReady(60 * time.Second)
	s.st.note(fmt.Sprintf("%s #%d: replica /readyz during the fault %s, serving again %v after it ended", f, n, orDash(readyzDuring), time.Since(healed).Round(10*time.Millisecond)))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (s *soakRun) blobRoot() string {
	for _, kv := range s.c.a.env {
		if v, ok := strings.CutPrefix(kv, "WHARF_STORAGE_FILESYSTEM_ROOT="); ok {
			return v
		}
	}
	s.t.Fatal("no filesystem root")
	return ""
}

func status(u string) int {
	resp, err := soakClient.Get(u)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady waits until both replicas are ready and the load balancer
// routes to them.
func (s *soakRun) waitReady(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if status("http://"+s.c.a.addr+"/readyz") == 200 && status("http://"+s.c.b.addr+"/readyz") == 200 &&
			status(s.c.lb+"/v2/") == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("the registry is not ready %v after the fault ended", d)
}

// soakClient never follows redirects: what the registry answered is what
// is counted; a 307 to the object store is followed by hand.
var soakClient = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type worker struct {
	s      *soakRun
	rng    *rand.Rand
	id     int
	direct bool // to the replicas themselves, not through the load balancer
	n      int
}

func (w *worker) base() string {
	if !w.direct {
		return w.s.c.lb
	}
	w.n++
	return "http://" + []*replica{w.s.c.a, w.s.c.b}[w.n%2].addr
}

func (w *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		w.s.mu.Lock()
		nlive := len(w.s.live)
		w.s.mu.Unlock()
		switch p := w.rng.IntN(100); {
		case p < 35 && nlive < 300:
			w.push()
		case p < 70:
			w.pull()
		case p < 80:
			w.tag()
		default:
			w.delete()
		}
	}
}

// call sends one request to the registry and counts its answer.
func (w *worker) call(op, method, u string, body []byte, hdr map[string]string) (int, []byte, http.Header) {
	resp, err := soakClient.Do(newRequest(method, u, body, hdr))
	if err != nil {
		w.s.st.answer(op, 0, nil, method)
		return 0, nil, nil
	}
	b, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		w.s.st.answer(op, 0, nil, method)
		return 0, nil, nil
	}
	w.s.st.answer(op, resp.StatusCode, b, method)
	return resp.StatusCode, b, resp.Header
}

func (w *worker) blob(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return b
}

// sharedLayer is one of a few layers many images use, so GC and pushes
// race on the same blobs.
func sharedLayer(i int) []byte {
	return bytes.Repeat([]byte("wharf shared layer "+strconv.Itoa(i)+"\n"), 1500)
}

// uploadBlob pushes b to repo monolithically or in chunks; true when the
// registry acknowledged it (201), or said with a HEAD that it has it.
func (w *worker) uploadBlob(base, repo string, b []byte) bool {
	d := digest.FromBytes(b)
	w.s.mu.Lock()
	w.s.tried = append(w.s.tried, attempt{repo: repo, d: d})
	w.s.mu.Unlock()
	if w.rng.IntN(2) == 0 {
		if st, _, _ := w.call("push", http.MethodHead, base+"/v2/"+repo+"/blobs/"+d.String(), nil, nil); st == 200 {
			return true
		}
	}
	if w.rng.IntN(3) > 0 {
		st, _, _ := w.call("push", http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b, nil)
		return st == 201
	}
	st, _, h := w.call("push", http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	if st != 202 {
		return false
	}
	loc := h.Get("Location")
	chunk := max(len(b)/3, 1)
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		st, _, h = w.call("push", http.MethodPatch, on(w.base(), loc), b[off:end], map[string]string{
			"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("%d-%d", off, end-1)})
		if st != 202 {
			return false
		}
		loc = h.Get("Location")
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	st, _, _ = w.call("push", http.MethodPut, on(w.base(), loc)+sep+"digest="+d.String(), nil, nil)
	return st == 201
}

func (w *worker) push() {
	base := w.base()
	n := w.s.next()
	repo := fmt.Sprintf("soak/r%d", n%4)
	tag := fmt.Sprintf("p%d", n)
	cfg := []byte(fmt.Sprintf(`{"soak":%d,"worker":%d}`, n, w.id))
	layers := [][]byte{sharedLayer(w.rng.IntN(6)), w.blob(512 + w.rng.IntN(32<<10))}
	blobs := []digest.Digest{digest.FromBytes(cfg)}
	for _, b := range append([][]byte{cfg}, layers...) {
		if !w.uploadBlob(base, repo, b) {
			return
		}
	}
	var ls []string
	for _, l := range layers {
		d := digest.FromBytes(l)
		blobs = append(blobs, d)
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, d, len(l)))
	}
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		blobs[0], len(cfg), strings.Join(ls, ","))
	md := digest.FromBytes(m)
	w.s.mu.Lock()
	w.s.tried = append(w.s.tried, attempt{repo: repo, tag: tag, d: md, manifest: true})
	w.s.mu.Unlock()
	st, _, _ := w.call("push", http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, m, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if st != 201 {
		return
	}
	w.s.mu.Lock()
	w.s.live[repo+"@"+md.String()] = &image{repo: repo, digest: md, manifest: m, blobs: blobs, tags: []string{tag}}
	w.s.st.acked++
	w.s.mu.Unlock()
}

// pick returns a random live image and one of its tags.
func (w *worker) pick() (*image, string) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if len(w.s.live) == 0 {
		return nil, ""
	}
	i := w.rng.IntN(len(w.s.live))
	for _, im := range w.s.live {
		if i == 0 {
			return im, im.tags[w.rng.IntN(len(im.tags))]
		}
		i--
	}
	return nil, ""
}

func (w *worker) stillLive(im *image) bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.isLive(im)
}

// isLive: im is acknowledged and no delete of it has started (s.mu held).
func (s *soakRun) isLive(im *image) bool { return s.live[im.repo+"@"+im.digest.String()] == im }

func (w *worker) pull() {
	im, tag := w.pick()
	if im == nil {
		return
	}
	base := w.base()
	st, b, _ := w.call("pull", http.MethodGet, base+"/v2/"+im.repo+"/manifests/"+tag, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	switch {
	case st == 200 && digest.FromBytes(b) != im.digest:
		w.s.st.lose(fmt.Sprintf("%s:%s serves manifest %s, want %s", im.repo, tag, digest.FromBytes(b), im.digest))
		return
	case st == 404 && w.stillLive(im):
		w.s.st.lose(fmt.Sprintf("%s:%s (acknowledged) answered 404", im.repo, tag))
		return
	case st != 200:
		return
	}
	for _, d := range im.blobs {
		if !w.getBlob(base, im, d) {
			return
		}
	}
}

// getBlob fetches and verifies one blob; false when it could not.
func (w *worker) getBlob(base string, im *image, d digest.Digest) bool {
	st, b, h := w.call("pull", http.MethodGet, base+"/v2/"+im.repo+"/blobs/"+d.String(), nil, nil)
	if st == http.StatusTemporaryRedirect {
		resp, err := http.Get(h.Get("Location")) // the object store's, not the registry's answer
		if err != nil {
			w.s.st.storeAnswer(0)
			return false
		}
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		w.s.st.storeAnswer(resp.StatusCode)
		if err != nil || resp.StatusCode != 200 {
			return false
		}
		st = 200
	}
	switch {
	case st == 200 && digest.FromBytes(b) != d:
		w.s.st.lose(fmt.Sprintf("blob %s of %s reads back as %s", d, im.repo, digest.FromBytes(b)))
	case st == 404 && w.stillLive(im):
		w.s.st.lose(fmt.Sprintf("blob %s of %s@%s (acknowledged) answered 404", d, im.repo, im.digest))
	}
	return st == 200
}

func (w *worker) tag() {
	im, _ := w.pick()
	if im == nil {
		return
	}
	tag := fmt.Sprintf("t%d", w.s.next())
	w.s.mu.Lock()
	if !w.s.isLive(im) {
		w.s.mu.Unlock()
		return
	}
	im.tagging++ // a PUT of the manifest would bring a deleted one back
	w.s.tried = append(w.s.tried, attempt{repo: im.repo, tag: tag, d: im.digest, manifest: true})
	w.s.mu.Unlock()
	st, _, _ := w.call("tag", http.MethodPut, w.base()+"/v2/"+im.repo+"/manifests/"+tag, im.manifest, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	im.tagging--
	if st == 201 {
		im.tags = append(im.tags, tag)
		w.s.st.acked++
	}
}

func (w *worker) delete() {
	im, _ := w.pick()
	if im == nil {
		return
	}
	w.s.mu.Lock()
	key := im.repo + "@" + im.digest.String()
	if !w.s.isLive(im) || im.tagging > 0 {
		w.s.mu.Unlock()
		return
	}
	delete(w.s.live, key) // from now on its answers are undefined
	w.s.mu.Unlock()
	st, _, _ := w.call("delete", http.MethodDelete, w.base()+"/v2/"+im.repo+"/manifests/"+im.digest.String(), nil, nil)
	if st == 202 {
		w.s.mu.Lock()
		w.s.deleted = append(w.s.deleted, im)
		w.s.mu.Unlock()
	}
}

// verify checks the end state through the load balancer.
func (s *soakRun) verify() {
	w := &worker{s: s, rng: rand.New(rand.NewPCG(1, 2))}
	base := s.c.lb
	for _, im := range s.live {
		for _, tag := range im.tags {
			st, b, _ := w.call("verify", http.MethodGet, base+"/v2/"+im.repo+"/manifests/"+tag, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
			if st != 200 || digest.FromBytes(b) != im.digest {
				s.st.lose(fmt.Sprintf("final: %s:%s answered %d (manifest %s, want %s)", im.repo, tag, st, digest.FromBytes(b), im.digest))
			}
		}
		for _, d := range im.blobs {
			if !w.getBlob(base, im, d) {
				s.st.lose(fmt.Sprintf("final: blob %s of %s@%s not readable", d, im.repo, im.digest))
			}
		}
	}
	for _, im := range s.deleted {
		if st, _, _ := w.call("verify", http.MethodGet, base+"/v2/"+im.repo+"/manifests/"+im.digest.String(), nil, nil); st != 404 {
			s.st.bad(fmt.Sprintf("final: deleted manifest %s@%s answers %d", im.repo, im.digest, st))
		}
	}
	// Whatever a push tried and did not get acknowledged is absent or whole.
	for _, a := range s.tried {
		kind, u := "blobs", base+"/v2/"+a.repo+"/blobs/"+a.d.String()
		if a.manifest {
			kind, u = "manifests", base+"/v2/"+a.repo+"/manifests/"+a.tag
		}
		st, b, h := w.call("verify", http.MethodGet, u, nil, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		if st == http.StatusTemporaryRedirect {
			resp, err := http.Get(h.Get("Location"))
			if err != nil {
				s.st.bad(fmt.Sprintf("final: %s: %v", u, err))
				continue
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			st = resp.StatusCode
		}
		if st == 200 && digest.FromBytes(b) != a.d {
			s.st.bad(fmt.Sprintf("final: %s %s answers content %s, want %s or nothing", kind, u, digest.FromBytes(b), a.d))
		} else if st != 200 && st != 404 {
			s.st.bad(fmt.Sprintf("final: %s answers %d", u, st))
		}
	}
	if s.c.storage == "filesystem" {
		s.verifyFiles()
	}
	// And it takes writes again.
	if !w.uploadBlob(base, "soak/after", []byte("after the faults")) {
		s.st.bad("final: the registry does not take a push after the faults")
	}
}

// verifyFiles: every file at a blob's final path hashes to its name.
func (s *soakRun) verifyFiles() {
	root := filepath.Join(s.blobRoot(), "blobs", "sha256")
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil // collected meanwhile
		}
		defer f.Close()
		got, _ := digest.SHA256.FromReader(f)
		if got.Encoded() != d.Name() {
			s.st.bad(fmt.Sprintf("final: %s holds %s", p, got))
		}
		s.st.mu.Lock()
		s.st.files++
		s.st.mu.Unlock()
		return nil
	})
}

func (s *soakRun) report(took time.Duration) {
	t, st := s.t, s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	var ops []string
	total := 0
	for op, n := range st.ops {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
		total += n
	}
	sort.Strings(ops)
	var faults []string
	for f, n := range st.faults {
		faults = append(faults, fmt.Sprintf("%s ×%d", f, n))
	}
	sort.Strings(faults)
	var b strings.Builder
	fmt.Fprintf(&b, "soak %s: %v, %d requests (%s), faults: %s\n", s.c.storage, took.Round(time.Second), total, strings.Join(ops, ", "), strings.Join(faults, ", "))
	fmt.Fprintf(&b, "  acknowledged writes %d (images and tags), acknowledged deletes %d, live at the end %d, lost %d; files verified %d\n",
		st.acked, len(s.deleted), len(s.live), len(st.lost), st.files)
	for _, p := range st.order {
		fmt.Fprintf(&b, "  %-30s %s\n", p, st.byStatus(p))
	}
	if len(st.store) > 0 {
		fmt.Fprintf(&b, "  object store (redirect targets)  %s\n", fmtCounts(st.store))
	}
	for _, n := range st.notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	t.Log(b.String())
	for _, l := range st.lost {
		t.Errorf("lost: %s", l)
	}
	for _, e := range st.errs {
		t.Error(e)
	}
	if n := st.status500(); n > 0 {
		t.Errorf("%d answers were 500", n)
		for _, r := range []*replica{s.c.a, s.c.b} { // what the replicas said
			b, _ := os.ReadFile(r.log)
			for i, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"internal error"`) && i < 1e6 {
					t.Logf("replica %s: %.1000s", r.name, l)
				}
			}
		}
	}
}

// fromLB marks, in the counts, answers HAProxy gave itself (its
// errorfile, lbMessage) because no replica was ready.
const (
	fromLB    = 10000
	lbMessage = "no registry replica could answer"
)

type soakStats struct {
	mu     sync.Mutex
	phase  string
	order  []string
	status map[string]map[int]int // phase -> status (0: no answer) -> count
	ops    map[string]int
	faults map[string]int
	store  map[int]int
	acked  int
	files  int
	lost   []string
	errs   []string
	notes  []string
}

func newSoakStats() *soakStats {
	s := &soakStats{status: map[string]map[int]int{}, ops: map[string]int{}, faults: map[string]int{}, store: map[int]int{}}
	s.setPhase("calm")
	return s
}

func (s *soakStats) setPhase(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase = p
	if s.status[p] == nil {
		s.status[p] = map[int]int{}
		s.order = append(s.order, p)
	}
}

func (s *soakStats) fault(f string) {
	s.setPhase(f)
	s.mu.Lock()
	s.faults[f]++
	s.mu.Unlock()
}

func (s *soakStats) note(n string) {
	s.mu.Lock()
	s.notes = append(s.notes, n)
	s.mu.Unlock()
}

func (s *soakStats) lose(msg string) {
	s.mu.Lock()
	s.lost = append(s.lost, msg)
	s.mu.Unlock()
}

func (s *soakStats) bad(msg string) {
	s.mu.Lock()
	if len(s.errs) < 50 {
		s.errs = append(s.errs, msg)
	}
	s.mu.Unlock()
}

func (s *soakStats) storeAnswer(code int) {
	s.mu.Lock()
	s.store[code]++
	s.mu.Unlock()
}

// answer counts one registry answer and checks that a failure carries an
// OCI error body.
func (s *soakStats) answer(op string, code int, body []byte, method string) {
	if code >= 500 && bytes.Contains(body, []byte(lbMessage)) {
		code += fromLB
	}
	s.mu.Lock()
	s.status[s.phase][code]++
	s.ops[op]++
	phase := s.phase
	s.mu.Unlock()
	if code < 400 || method == http.MethodHead {
		return
	}
	if e, ok := oci.ParseErrorResponse(body); !ok || e.Errors[0].Code == "" {
		s.bad(fmt.Sprintf("%s: %s answered %d without an OCI error body: %.200q", phase, op, code, body))
	}
}

func (s *soakStats) status500() int {
	n := 0
	for _, m := range s.status {
		n += m[500]
	}
	return n
}

func (s *soakStats) byStatus(p string) string { return fmtCounts(s.status[p]) }

func fmtCounts(m map[int]int) string {
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		name := strconv.Itoa(c)
		switch {
		case c == 0:
			name = "no answer"
		case c > fromLB:
			name = strconv.Itoa(c-fromLB) + " (haproxy)"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, m[c]))
	}
	return strings.Join(parts, ", ")
}
