// Package htpasswd reads and writes htpasswd files of bcrypt hashes (the
// format of `htpasswd -B`), one "user:hash" a line. Weaker hashes (MD5
// "$apr1$", SHA1 "{SHA}", crypt, plain text) are refused when the file is
// read, naming the user and line, so a weak password is never accepted.
package htpasswd

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/wharf-registry/wharf/internal/atomicfile"
	"golang.org/x/crypto/bcrypt"
)

// File is a parsed htpasswd file; the zero value is an empty one. Its methods are not safe for concurrent
// mutation; Verify may run concurrently with other Verify calls.
type File struct {
	users map[string][]byte
	order []string
	// dummies, set by PrepareDummies: a hash per bcrypt cost of the users,
	// and each user's cost in file order.
	dummies map[int][]byte
	costs   []int
}

// dummyHash is compared against when a user is unknown and the file has
// no dummies prepared (no users, or PrepareDummies not called).
// It is computed on first use: at package init it cost every wharf
// invocation (the client commands too) ~150 ms of bcrypt.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("wharf-dummy-password"), bcrypt.DefaultCost)
	return h
})

// PrepareDummies computes what Verify compares against for an unknown
// user, so that an unknown user costs what a real one does whatever the
// costs in the file (`htpasswd -B -C 5`, `wharf user add --cost 12`):
// one bcrypt hash per cost the users have (so a reload costs one
// GenerateFromPassword per distinct cost). Each unknown name is given,
// stably, the cost of one of the users, chosen by a hash of the name: an
// unknown name is as likely to cost what any given user costs as that
// user's share of the file, so timing cannot tell it from a real one.
// A server calls it after Load (the user commands need not); Set and
// Remove do not update it.
func (f *File) PrepareDummies() error {
	f.dummies, f.costs = map[int][]byte{}, make([]int, 0, len(f.order))
	for _, u := range f.order {
		c, err := bcrypt.Cost(f.users[u])
		if err != nil {
			return fmt.Errorf("htpasswd user %q: %w", u, err)
		}
		f.costs = append(f.costs, c)
		if _, ok := f.dummies[c]; ok {
			continue
		}
		var pw [16]byte
		_, _ = rand.Read(pw[:])
		h, err := bcrypt.GenerateFromPassword(pw[:], c)
		if err != nil {
			return err
		}
		f.dummies[c] = h
	}
	return nil
}

// hashFor is the hash Verify compares password against for user.
func (f *File) hashFor(user string) (hash []byte, known bool) {
	if h, ok := f.users[user]; ok {
		return h, true
	}
	if len(f.costs) == 0 {
		return dummyHash(), false
	}
	sum := sha256.Sum256([]byte(user))
	return f.dummies[f.costs[binary.BigEndian.Uint64(sum[:8])%uint64(len(f.costs))]], false
}

// Cost is the bcrypt cost Verify spends on user: its hash's, or for an
// unknown user the dummy's it is compared against.
func (f *File) Cost(user string) int {
	h, _ := f.hashFor(user)
	c, _ := bcrypt.Cost(h)
	return c
}

// Parse reads an htpasswd file. Blank lines and lines starting with '#'
// are ignored.
func Parse(r io.Reader) (*File, error) {
	f := &File{users: map[string][]byte{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd line %d: want user:hash", n)
		}
		if err := CheckHash(hash); err != nil {
			return nil, fmt.Errorf("htpasswd line %d (user %q): %w", n, user, err)
		}
		if _, dup := f.users[user]; dup {
			return nil, fmt.Errorf("htpasswd line %d: user %q appears twice", n, user)
		}
		f.users[user] = []byte(hash)
		f.order = append(f.order, user)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	return f, nil
}

// CheckHash returns nil for a bcrypt hash and an error naming the scheme
// of anything else.
func CheckHash(hash string) error {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("malformed bcrypt hash: %v", err)
		}
		return nil
	case strings.HasPrefix(hash, "$apr1$"), strings.HasPrefix(hash, "$1$"):
		return errors.New("MD5 hash refused: only bcrypt is accepted (htpasswd -B or `wharf user add`)")
	case strings.HasPrefix(hash, "{SHA}"):
		return errors.New("SHA1 hash refused: only bcrypt is accepted (htpasswd -B or `wharf user add`)")
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return errors.New("SHA-crypt hash refused: only bcrypt is accepted (htpasswd -B or `wharf user add`)")
	case len(hash) == 13:
		return errors.New("crypt(3) DES hash (or a 13-character plain-text password) refused: only bcrypt is accepted")
	default:
		return errors.New("not a bcrypt hash (plain text?): only bcrypt is accepted (htpasswd -B or `wharf user add`)")
	}
}

// Load reads the htpasswd file at path; a missing file is an empty one.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{users: map[string][]byte{}}, nil
	}
	if err != nil {
		return nil, err
	}
	f, err := Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Verify reports whether password is user's. It costs one bcrypt
// comparison whether or not the user exists, at a cost of the file's
// users for an unknown one once PrepareDummies ran.
func (f *File) Verify(user, password string) bool {
	hash, ok := f.hashFor(user)
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return ok && err == nil
}

// Has reports whether user exists.
func (f *File) Has(user string) bool { _, ok := f.users[user]; return ok }

// Users lists the user names in file order.
func (f *File) Users() []string { return slices.Clone(f.order) }

// Set adds user or replaces its password, hashing it with bcrypt at cost.
func (f *File) Set(user, password string, cost int) error {
	if user == "" || strings.ContainsAny(user, ":\n\r#") || strings.TrimSpace(user) != user {
		return fmt.Errorf("invalid user name %q", user)
	}
	if password == "" {
		return errors.New("empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return err
	}
	if f.users == nil {
		f.users = map[string][]byte{}
	}
	if _, ok := f.users[user]; !ok {
		f.order = append(f.order, user)
	}
	f.users[user] = hash
	return nil
}

// Remove deletes user; it reports whether the user existed.
func (f *File) Remove(user string) bool {
	if _, ok := f.users[user]; !ok {
		return false
	}
	delete(f.users, user)
	f.order = slices.DeleteFunc(f.order, func(u string) bool { return u == user })
	return true
}

// WriteTo writes the file in htpasswd format.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, u := range f.order {
		fmt.Fprintf(&b, "%s:%s\n", u, f.users[u])
	}
	return b.WriteTo(w)
}

// Save writes the file to path atomically (temporary file, fsync, rename)
// with mode 0600.
func (f *File) Save(path string) error {
	return atomicfile.Write(path, atomicfile.Options{Mode: 0o600, Sync: true}, func(w io.Writer) error {
		_, err := f.WriteTo(w)
		return err
	})
}
