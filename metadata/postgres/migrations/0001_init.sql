-- Wharf metadata schema, version 1 (PostgreSQL). Times are Unix nanoseconds.
CREATE TABLE repositories (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- Every blob the registry stores, and where (storage_key) it lives.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Which repositories may serve which blobs.
CREATE TABLE repository_blobs (
    repo       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repo          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT NOT NULL DEFAULT '',
    subject       TEXT,
    annotations   TEXT,
    payload       BYTEA NOT NULL,
    size          BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests (repo, subject);

-- References from manifests, for validation and garbage collection.
CREATE TABLE manifest_blobs (
    repo            TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    blob_digest     TEXT NOT NULL,
    PRIMARY KEY (repo, manifest_digest, blob_digest)
);
CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob_digest);

CREATE TABLE manifest_children (
    repo          TEXT NOT NULL,
    parent_digest TEXT NOT NULL,
    child_digest  TEXT NOT NULL,
    PRIMARY KEY (repo, parent_digest, child_digest)
);
CREATE INDEX manifest_children_child ON manifest_children (repo, child_digest);

CREATE TABLE tags (
    repo            TEXT NOT NULL,
    name            TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (repo, name)
);
CREATE INDEX tags_manifest ON tags (repo, manifest_digest);

-- Upload sessions: all a replica needs to continue one.
CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    repo          TEXT NOT NULL,
    byte_offset   BIGINT NOT NULL,
    hash_alg      TEXT NOT NULL,
    hash_state    BYTEA,
    backend_state BYTEA,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads (updated_at);
