package s3

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wharf-registry/wharf/registry"
)

// state is the session state kept in registry.Upload.Backend.
type state struct {
	V   int    `json:"v"`
	Key string `json:"key"` // the blob's final object
	MPU string `json:"mpu"` // multipart upload id
	// Off is the number of bytes this state holds: parts, then tail.
	Off   int64     `json:"off"`
	Parts []part    `json:"parts,omitempty"`
	Tail  []segment `json:"tail,omitempty"`
	// Prev is the state before the last Append, so an Append whose
	// offset was never recorded can be rolled back by the next one.
	Prev *snapshot `json:"prev,omitempty"`
	// Done: Reader completed the multipart upload (the object exists).
	Done bool `json:"done,omitempty"`
}

type part struct {
	N    int32  `json:"n"`
	ETag string `json:"etag"`
	Size int64  `json:"size"`
}

// segment is a tail object; only its first Len bytes count.
type segment struct {
	Key string `json:"key"`
	Len int64  `json:"len"`
}

type snapshot struct {
	Off    int64     `json:"off"`
	NParts int       `json:"nparts"`
	Tail   []segment `json:"tail,omitempty"`
}

func (st *state) partsBytes(n int) int64 {
	var t int64
	for _, p := range st.Parts[:n] {
		t += p.Size
	}
	return t
}

func tailBytes(t []segment) int64 {
	var n int64
	for _, s := range t {
		n += s.Len
	}
	return n
}

// truncateTail keeps the first n bytes of a tail.
func truncateTail(t []segment, n int64) []segment {
	var out []segment
	for _, s := range t {
		if n <= 0 {
			break
		}
		s.Len = min(s.Len, n)
		n -= s.Len
		out = append(out, s)
	}
	return out
}

var errLost = errors.New("s3 store: session state does not hold the recorded offset")

// at returns the state holding exactly off bytes: the state itself, or it
// or its predecessor cut back (dropping bytes written past a recorded
// offset, which the next Append must discard), and the tail segments that
// the result no longer references.
func (st *state) at(off int64) (*state, []string, error) {
	all := map[string]bool{}
	for _, s := range st.Tail {
		all[s.Key] = true
	}
	if st.Prev != nil {
		for _, s := range st.Prev.Tail {
			all[s.Key] = true
		}
	}
	e := &state{V: st.V, Key: st.Key, MPU: st.MPU, Done: st.Done}
	switch pb := st.partsBytes(len(st.Parts)); {
	case off == st.Off:
		e.Off, e.Parts, e.Tail = st.Off, st.Parts, st.Tail
	case off >= pb && off < st.Off:
		e.Off, e.Parts, e.Tail = off, st.Parts, truncateTail(st.Tail, off-pb)
	case st.Prev != nil && st.Prev.NParts <= len(st.Parts) && off >= st.partsBytes(st.Prev.NParts) && off <= st.Prev.Off:
		n := st.Prev.NParts
		e.Off, e.Parts, e.Tail = off, st.Parts[:n], truncateTail(st.Prev.Tail, off-st.partsBytes(n))
	default:
		return nil, nil, fmt.Errorf("%w (state %d, recorded %d): %w", errLost, st.Off, off, registry.ErrNotFound)
	}
	if e.Done && off != st.Off {
		return nil, nil, fmt.Errorf("%w: %w", errLost, registry.ErrNotFound)
	}
	e.Parts = append([]part(nil), e.Parts...)
	e.Tail = append([]segment(nil), e.Tail...)
	for _, s := range e.Tail {
		delete(all, s.Key)
	}
	garbage := make([]string, 0, len(all))
	for k := range all {
		garbage = append(garbage, k)
	}
	return e, garbage, nil
}

func decodeState(u *registry.Upload) (*state, error) {
	var st state
	if err := json.Unmarshal(u.Backend, &st); err != nil || st.V != 1 || st.Key == "" || st.MPU == "" {
		return nil, fmt.Errorf("s3 store: upload %s has no valid S3 state: %w", u.ID, registry.ErrNotFound)
	}
	return &st, nil
}

func (s *Store) uploadPrefix(u *registry.Upload) (string, error) {
	if u.ID == "" || strings.ContainsAny(u.ID, `/\.`) {
		return "", fmt.Errorf("s3 store: invalid upload id %q", u.ID)
	}
	return s.prefix + "uploads/" + u.ID + "/", nil
}

// BlobKey is where the upload with this id puts its blob.
func (s *Store) BlobKey(uploadID string) string { return s.prefix + "blobs/" + uploadID }
