-- Garbage collection bookkeeping and leases.

-- One row per blob digest GC must look at with care. touched_at is the last
-- time an upload or mount of the digest began (the review delay counts from
-- it); deleting_key is set when GC has removed the blob from the database
-- and its storage object is still to be deleted. The row is also the lock
-- an upload takes before it writes a content-addressed object, so an upload
-- and GC's storage delete of the same digest never overlap.
CREATE TABLE gc_blob_reviews (
    digest       TEXT PRIMARY KEY,
    touched_at   BIGINT NOT NULL,
    deleting_key TEXT
);

-- Leases: background work (GC, upload expiry) runs on one replica at a time.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX blobs_created ON blobs (created_at);
CREATE INDEX manifests_created ON manifests (created_at);
