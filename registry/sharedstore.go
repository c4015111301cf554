// This file holds what the core needs of a metadata store that replicas
// share: news of the other replicas' writes, and the touch that keeps a
// blob away from garbage collection while it is being written.

package registry

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// ChangeFeed is implemented by metadata stores that several replicas share
// and that can tell each replica what the others wrote (PostgreSQL's
// LISTEN/NOTIFY). package app runs WatchRepos with Registry.Invalidate, so
// a tag moved through one replica is served by every replica at once.
type ChangeFeed interface {
	// WatchRepos calls changed with the name of every repository whose
	// manifests, tags or blob links a committed write changed, and with ""
	// when changes may have been missed (the feed reconnected, or is down:
	// then at least every few seconds). It returns when ctx is done.
	WatchRepos(ctx context.Context, changed func(repo string)) error
}

// Invalidate drops everything cached for repo (manifests by tag and
// digest, resolved images, batch answers); "" drops every cache. Cached
// signatures are keyed by digest, storage key and expiry, so they stay
// valid whatever changed.
func (r *Registry) Invalidate(repo string) {
	if repo == "" {
		r.c.gens.bumpAll()
		return
	}
	r.c.gens.bump(repo)
}

// BlobToucher is implemented by metadata stores whose blobs are garbage
// collected online (the gc package). TouchBlob records that an upload or
// mount of d is under way, so garbage collection leaves d alone for its
// review delay; it waits while a collection of d is deleting d's storage
// object, so a new upload never writes where a deletion is in progress.
type BlobToucher interface {
	TouchBlob(ctx context.Context, d digest.Digest) error
}

func (r *Registry) touchBlob(ctx context.Context, d digest.Digest) error {
	if t, ok := r.meta.(BlobToucher); ok {
		if err := t.TouchBlob(ctx, d); err != nil {
			return internal("touch blob", err)
		}
	}
	return nil
}
