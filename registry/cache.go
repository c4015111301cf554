package registry

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/internal/cache"
)

// DefaultCacheMaxBytes is the memory of the registry's caches when none
// is set.
const DefaultCacheMaxBytes = 128 << 20

// maxCachedLast is the longest tags/list `last` whose answer is cached:
// a tag is at most 128 characters, so a longer `last` is a caller's
// invention, answered from the store and forgotten.
const maxCachedLast = 128

// caches are the registry's in-memory caches, one byte budget
// (Options.CacheMaxBytes) split among them. An entry is valid only for
// the repository generation it was read under (see generations).
type caches struct {
	gens      generations
	manifests *cache.Cache[refKey, *cached[ManifestRecord]]   // repo, tag or digest
	tagLists  *cache.Cache[tagsKey, cached[[]string]]         // repo, last, n
	images    *cache.Cache[refKey, cached[*resolvedImage]]    // repo+digest
	batches   *cache.Cache[batchKey, cached[*batch.Response]] // batch answers
	blobInfos *cache.Cache[refKey, *blobInfoEntry]            // repo+digest (StatBlob)
	sigs      signatureCache
}

// refKey is a repository and a reference (a tag or digest).
type refKey struct{ repo, ref string }

// cached is a value and the repository generation it was read under.
type cached[V any] struct {
	gen uint64
	v   V
}

// newCaches splits maxBytes by sixteenths: manifests 5, batch answers 4,
// resolved images 2, signatures 2, and one each for tag lists, blob
// lookups and generation counters. Signatures and batch answers give
// their memory back when they expire (by the clock now).
func newCaches(maxBytes int64, now func() time.Time) *caches {
	s := maxBytes / 16
	// wall is when t on the registry's clock comes on the cache's.
	wall := func(t time.Time) time.Time { return time.Now().Add(t.Sub(now())) }
	c := &caches{
		manifests: cache.New(5*s, func(k refKey, e *cached[ManifestRecord]) int64 {
			return cache.Strings(k.repo, k.ref) + recordBytes(e.v)
		}),
		tagLists: cache.New(s, func(k tagsKey, e cached[[]string]) int64 {
			return cache.Strings(k.repo, k.last) + cache.Strings(e.v...) + 24
		}),
		images: cache.New(2*s, func(k refKey, e cached[*resolvedImage]) int64 { return cache.Strings(k.repo, k.ref) + e.v.bytes() }),
		batches: cache.NewExpiring(4*s, func(k batchKey, e cached[*batch.Response]) int64 { return k.bytes() + responseBytes(e.v) },
			func(_ batchKey, e cached[*batch.Response]) time.Time { return wall(e.v.ExpiresAt) }),
		blobInfos: cache.New(s, func(k refKey, e *blobInfoEntry) int64 {
			return cache.Strings(k.repo, k.ref) + blobInfoBytes(e.info) + 48 // the entry: gen, time
		}),
	}
	c.gens.maxBytes = s
	c.sigs.m = cache.NewExpiring(2*s, func(k sigKey, u SignedURL) int64 {
		return cache.Strings(string(k.d), k.key, k.gen, u.URL) + 32
	}, func(_ sigKey, u SignedURL) time.Time { return wall(u.Expires) })
	return c
}

func recordBytes(r ManifestRecord) int64 {
	// 136: the record itself (its times, slice and map headers).
	n := cache.Strings(string(r.Digest), r.MediaType, r.ArtifactType, string(r.Subject)) + int64(len(r.Payload)) + 136
	for k, v := range r.Annotations {
		n += cache.Strings(k, v) + 16
	}
	return n
}

func blobInfoBytes(b BlobInfo) int64 { return cache.Strings(string(b.Digest), b.Key) + 8 }

func (img *resolvedImage) bytes() int64 {
	n := cache.Strings(string(img.digest)) + 40
	for _, b := range img.blobs {
		n += blobInfoBytes(b.info) + cache.Strings(b.mediaType, b.kind)
	}
	return n
}

func (k batchKey) bytes() int64 { return cache.Strings(k.base, k.repo, string(k.digest), k.sgen) + 8 }

// responseBytes counts an answer twice over: the struct, and the JSON body
// encoded from it once it is served.
func responseBytes(b *batch.Response) int64 {
	n := cache.Strings(string(b.ManifestDigest)) + 64
	for _, u := range b.Blobs {
		n += cache.Strings(string(u.Digest), u.MediaType, u.Kind, u.DownloadURL) + 8
	}
	if b.Manifest != nil {
		n += cache.Strings(b.Manifest.MediaType, string(b.Manifest.Digest)) + int64(len(b.Manifest.Data))*4/3
	}
	return 2 * n
}

// generations are per-repository write counters. Every write to a
// repository (on any replica, through the ChangeFeed) gives it a new
// generation; a cached entry is valid only for the generation it was
// read under, so a reader racing a writer can never resurrect what the
// writer replaced.
//
// A repository's generation only grows and never takes a value twice:
// every new one comes from one sequence. Repositories never written to
// since the last reset share floor, so reads (of names that may not
// exist) record nothing; the counters of written repositories are kept
// in a map bounded by maxBytes, and when it fills the map is emptied and
// floor moves past every value handed out, which invalidates everything
// cached, as Invalidate("") does.
type generations struct {
	seq      atomic.Uint64
	floor    atomic.Uint64
	m        sync.Map // repo -> uint64
	mu       sync.Mutex
	bytes    int64 // of the names in m, under mu
	maxBytes int64
}

// get is repo's current generation; it records nothing.
func (g *generations) get(repo string) uint64 {
	if v, ok := g.m.Load(repo); ok {
		return v.(uint64)
	}
	return g.floor.Load()
}

// bump gives repo a new generation.
func (g *generations) bump(repo string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.m.Load(repo); !ok {
		n := cache.Strings(repo) + cache.EntryOverhead
		if g.bytes+n > g.maxBytes {
			g.resetLocked()
		}
		g.bytes += n
		repo = strings.Clone(repo) // not the request line it was cut from
	}
	g.m.Store(repo, g.seq.Add(1))
}

// bumpAll gives every repository a new generation.
func (g *generations) bumpAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resetLocked()
}

func (g *generations) resetLocked() {
	// floor first: a reader that misses the emptied map must see the
	// new floor, never the old one.
	g.floor.Store(g.seq.Add(1))
	g.m.Clear()
	g.bytes = 0
}
