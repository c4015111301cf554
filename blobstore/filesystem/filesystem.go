// Package filesystem is the embedded blob store: blobs as files under one
// directory, content-addressed (blobs/<alg>/<2 hex>/<hex>), uploads as files
// under uploads/ that are fsynced and renamed into place when finished.
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/registry"
)

// Store is a registry.BlobStore on a local directory.
type Store struct {
	root string
}

var (
	_ registry.BlobStore   = (*Store)(nil)
	_ registry.UploadStore = (*Store)(nil)
)

// New returns a store rooted at dir, creating its directories.
func New(dir string) (*Store, error) {
	for _, sub := range []string{"blobs", "uploads"} {
		// Blobs of private repositories: this user's only.
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("filesystem store: %w", err)
		}
	}
	return &Store{root: dir}, nil
}

// path maps a key to a file, refusing keys that escape the root: keys come
// from our own metadata, but a corrupted row must not read /etc/passwd.
func (s *Store) path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || filepath.IsAbs(key) {
		return "", fmt.Errorf("filesystem store: invalid key %q", key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Open implements registry.BlobStore. The *os.File it returns lets
// net/http serve the body with sendfile.
func (s *Store) Open(_ context.Context, key string) (registry.ReadSeekCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	return f, err
}

// Delete implements registry.BlobStore.
func (s *Store) Delete(_ context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	return removeIfExists(p)
}

// Uploads implements registry.BlobStore.
func (s *Store) Uploads() registry.UploadStore { return s }

func (s *Store) uploadPath(u *registry.Upload) (string, error) {
	if u.ID == "" || strings.ContainsAny(u.ID, `/\.`) {
		return "", fmt.Errorf("filesystem store: invalid upload id %q", u.ID)
	}
	return filepath.Join(s.root, "uploads", u.ID), nil
}

// Begin implements registry.UploadStore.
func (s *Store) Begin(_ context.Context, u *registry.Upload) (err error) {
	defer full(&err)
	p, err := s.uploadPath(u)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// Lock implements registry.UploadStore: an exclusive flock on the session
// file, so replicas sharing the directory never write one session at
// once. The lock is held through the open file until unlock closes it.
func (s *Store) Lock(_ context.Context, u *registry.Upload) (func(), error) {
	p, err := s.uploadPath(u)
	if err != nil {
		return func() {}, nil // an id this store never made: nothing to guard
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		// Committed (a retry of the final PUT after the metadata commit
		// failed) or aborted: no request can write it any more.
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	ok, err := tryLock(f)
	if err != nil || !ok {
		f.Close()
		if err == nil {
			err = fmt.Errorf("filesystem store: upload %s is being written by another request: %w", u.ID, registry.ErrConflict)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Append implements registry.UploadStore. The file is truncated to the
// persisted offset first, dropping the tail of a write that was cut off
// before its offset was recorded.
func (s *Store) Append(_ context.Context, u *registry.Upload, r io.Reader) (_ int64, err error) {
	defer full(&err)
	p, err := s.uploadPath(u)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if links(st) > 1 {
		// The session is already a blob (a commit was cut off between its
		// link and its unlink): writing would change the blob's bytes.
		return 0, fmt.Errorf("filesystem store: upload %s is committed: %w", u.ID, registry.ErrNotFound)
	}
	if st.Size() < u.Offset {
		// Bytes we acknowledged are gone (a power loss before the page
		// cache reached the disk): the session cannot continue.
		return 0, fmt.Errorf("filesystem store: upload %s has %d bytes on disk, %d recorded: %w", u.ID, st.Size(), u.Offset, registry.ErrNotFound)
	}
	if st.Size() > u.Offset {
		if err := f.Truncate(u.Offset); err != nil {
			return 0, err
		}
	}
	if _, err := f.Seek(u.Offset, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := copyWithWriteback(f, r, u.Offset)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// copyBufSize is the read size of uploads: large reads mean few syscalls
// and large hash updates; the buffer is pooled, so memory per upload is flat.
const copyBufSize = 256 << 10

// writebackEvery is how often an upload asks the kernel to start writing
// what it received, so the fsync at commit finds little left to do.
const writebackEvery = 8 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyWithWriteback copies r to f (positioned at off) and starts
// asynchronous writeback of every full writebackEvery bytes.
func copyWithWriteback(f *os.File, r io.Reader, off int64) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n, pending int64
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			w, werr := f.Write(buf[:m])
			n += int64(w)
			pending += int64(w)
			if werr != nil {
				return n, werr
			}
			if pending >= writebackEvery {
				startWriteback(f, off+n-pending, pending)
				pending = 0
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Reader implements registry.UploadStore.
func (s *Store) Reader(_ context.Context, u *registry.Upload) (io.ReadCloser, error) {
	p, err := s.uploadPath(u)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, u.Offset), f}, nil
}

// Key returns where the blob d is stored.
func Key(d digest.Digest) string {
	enc := d.Encoded()
	return "blobs/" + string(d.Algorithm()) + "/" + enc[:2] + "/" + enc
}

// Commit implements registry.UploadStore: fsync, then a hard link at the
// content-addressed path, then the session's name is removed and both
// directories are fsynced, so a crash leaves either no blob or the whole
// blob. link never replaces a file: when the path holds a blob already
// (an identical upload, or a session whose bytes do not match what it
// claims) that blob stays, verified when it was placed, and ours is
// dropped. A rename would have replaced it.
func (s *Store) Commit(_ context.Context, u *registry.Upload, d digest.Digest) (_ string, err error) {
	defer full(&err)
	p, err := s.uploadPath(u)
	if err != nil {
		return "", err
	}
	key := Key(d)
	dst, err := s.path(key)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		// Committed before and the metadata commit failed: the session
		// file is already the blob d (verified before it was linked).
		// Commit is idempotent.
		if errors.Is(err, os.ErrNotExist) {
			if st, serr := os.Stat(dst); serr == nil && st.Size() == u.Offset {
				return key, nil
			}
		}
		return "", err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return "", err
	}
	if links(st) == 1 { // a second name means the bytes are a blob already
		if err := f.Truncate(u.Offset); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Link(p, dst); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return "", err
		}
		if err := sameBlob(dst, st, u.Offset); err != nil {
			return "", err
		}
	} else if err := syncDir(dir); err != nil {
		return "", err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return "", err
	}
	return key, nil
}

// sameBlob decides a commit whose content-addressed path is taken:
// the stored blob wins. It must have the session's size (the digest names
// the bytes, and so their length); anything else is a damaged store,
// refused rather than recorded with the wrong size.
func sameBlob(dst string, sess os.FileInfo, size int64) error {
	have, err := os.Stat(dst)
	if err != nil {
		return err
	}
	if os.SameFile(have, sess) || have.Size() == size {
		return nil
	}
	return fmt.Errorf("filesystem store: %s holds %d bytes, the upload %d: the stored blob is damaged", dst, have.Size(), size)
}

// Abort implements registry.UploadStore.
func (s *Store) Abort(_ context.Context, u *registry.Upload) error {
	p, err := s.uploadPath(u)
	if err != nil {
		return err
	}
	return removeIfExists(p)
}

// removeIfExists removes p; one already gone is no error.
func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// full wraps *err in registry.ErrInsufficientStorage when the file system
// is out of space or quota, so the client gets a 507, not a 500.
func full(err *error) {
	if *err != nil && (errors.Is(*err, syscall.ENOSPC) || errors.Is(*err, syscall.EDQUOT)) {
		*err = fmt.Errorf("%w: %w", registry.ErrInsufficientStorage, *err)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
