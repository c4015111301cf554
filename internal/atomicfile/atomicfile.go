// Package atomicfile writes a file so that readers, and a crash, see the
// old content or the new one, never part of it: the bytes go to a
// temporary file in the same directory, which then takes the name.
//
// Written by hand because the one maintained library for this
// (google/renameio) always fsyncs and only replaces: the registry's
// first-start keys need "create, never replace" (replicas starting
// together on a shared volume must agree on one key), and the client's
// OCI layout files skip the fsync unless asked.
package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
)

// Options say how Write finishes.
type Options struct {
	// Mode of the new file (0 means 0600: most of what the registry
	// writes this way is secret).
	Mode os.FileMode
	// Sync flushes the file to disk before it takes the name.
	Sync bool
	// NoReplace links the file into place instead of renaming it: Write
	// fails with an error matching os.ErrExist when path exists.
	NoReplace bool
}

// Write creates path with what write writes.
func Write(path string, o Options, write func(io.Writer) error) error {
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = f.Chmod(o.Mode)
	if err == nil {
		err = write(f)
	}
	if err == nil && o.Sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if o.NoReplace {
		return os.Link(f.Name(), path)
	}
	return os.Rename(f.Name(), path)
}

// WriteFile is Write of data.
func WriteFile(path string, data []byte, o Options) error {
	return Write(path, o, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// IsExist reports a NoReplace Write that found the file there.
func IsExist(err error) bool { return errors.Is(err, os.ErrExist) }
