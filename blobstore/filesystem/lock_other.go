//go:build !unix

package filesystem

import "os"

// tryLock is a no-op where flock does not exist: one process per data
// directory (the registry's own per-session mutex still serializes it).
func tryLock(*os.File) (bool, error) { return true, nil }

func links(os.FileInfo) uint64 { return 1 }
