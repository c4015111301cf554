-- Garbage collection review queues: a pass looks only at what changed
-- (after GitLab's container registry), instead of scanning every blob and
-- manifest. The queues are fed in the same transaction as each change; an
-- entry says "look at this", never "delete this": GC re-checks under lock.

-- Blobs that may have become garbage: created (upload), mounted or linked,
-- or referenced by a manifest that was deleted. review_from is when the
-- review delay starts counting (the change, or for a blob a manifest
-- deletion freed, the blob's creation); a pass reviews the entries whose
-- review_from is older than the delay and removes them, collected or not.
CREATE TABLE gc_blob_queue (
    digest      TEXT PRIMARY KEY,
    review_from BIGINT NOT NULL
);
CREATE INDEX gc_blob_queue_due ON gc_blob_queue (review_from, digest);

-- Manifests that may have become untagged garbage: pushed untagged, lost
-- their last tag, or were freed by the deletion of an index or subject.
-- review_from is the manifest's creation, which gc.untagged_after counts
-- from.
CREATE TABLE gc_manifest_queue (
    repo        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    review_from BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX gc_manifest_queue_due ON gc_manifest_queue (review_from, repo, digest);

-- ForgetReviews drops old touches by time.
CREATE INDEX gc_blob_reviews_touched ON gc_blob_reviews (touched_at);

-- Schema only: what is garbage already (and anything a replica older than
-- these queues writes during a rolling upgrade) is queued by the rescan
-- (sqlstore.Store.Rescan: wharf gc --rescan, and the GC worker when it
-- takes the maintenance lease and every 24h), in short paged statements
-- outside this migration's transaction.
