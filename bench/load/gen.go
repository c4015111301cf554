package main

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"math/bits"
)

// wyrand is a fast deterministic PRNG (wyhash's wyrand). It produces test
// data several GB/s faster than the network and SHA-256 can consume it, so
// generating a blob on the fly never limits a push.
type wyrand struct{ s uint64 }

func (r *wyrand) next() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// fill writes pseudo-random bytes to all of p.
func (r *wyrand) fill(p []byte) {
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, r.next())
		p = p[8:]
	}
	if len(p) > 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.next())
		copy(p, b[:])
	}
}

// blobSeed is the seed of blob i of a numbered set: far apart for every i.
func blobSeed(seed uint64, i int) uint64 {
	r := wyrand{s: seed ^ uint64(i)*0x9e3779b97f4a7c15}
	return r.next()
}

// genBlob returns size deterministic bytes for seed (for small blobs only).
func genBlob(seed uint64, size int) []byte {
	b := make([]byte, size)
	r := wyrand{s: seed}
	r.fill(b)
	return b
}

// stream is an io.Reader of n pseudo-random bytes that hashes what it hands
// out, so a multi-GiB blob is pushed without ever being held in memory and
// its digest is known once it has been read. The bytes are deterministic
// for a seed but differ at chunk boundaries from genBlob's: each Read
// starts a fresh 8-byte word, so only compare streams with streams.
type stream struct {
	rng  wyrand
	left int64
	h    hash.Hash
	n    int64
}

func newStream(seed uint64, n int64) *stream {
	return &stream{rng: wyrand{s: seed}, left: n, h: sha256.New()}
}

// newRawStream is newStream's bytes without the hashing (Sum is unset).
func newRawStream(seed uint64, n int64) *stream {
	return &stream{rng: wyrand{s: seed}, left: n}
}

// streamDigest is the digest of newStream(seed, n)'s bytes.
func streamDigest(seed uint64, n int64) string {
	s := newStream(seed, n)
	_, _ = io.Copy(io.Discard, s)
	return s.Sum()
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	// Fill whole words only, except at the very end, so that the output
	// does not depend on how the caller sizes its buffer.
	k := len(p) &^ 7
	if k == 0 {
		k = len(p)
	}
	s.rng.fill(p[:k])
	if s.h != nil {
		s.h.Write(p[:k])
	}
	s.left -= int64(k)
	s.n += int64(k)
	return k, nil
}

// Sum is the sha256 digest of everything read so far, as "sha256:<hex>".
func (s *stream) Sum() string { return "sha256:" + hexString(s.h.Sum(nil)) }

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hexString(sum[:])
}
