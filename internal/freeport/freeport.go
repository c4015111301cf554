// Package freeport finds free loopback ports for the servers tests start
// (Wharf, PostgreSQL, MinIO, HAProxy). A port may be taken again between
// choosing and binding: callers that start a process retry on a new one.
package freeport

import (
	"net"
	"testing"
)

// Addr returns a free "127.0.0.1:port".
func Addr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Port returns a free loopback port.
func Port() (int, error) {
	a, err := Addr()
	if err != nil {
		return 0, err
	}
	ap, err := net.ResolveTCPAddr("tcp", a)
	if err != nil {
		return 0, err
	}
	return ap.Port, nil
}

// MustAddr is Addr failing t on error.
func MustAddr(t testing.TB) string {
	t.Helper()
	return must(t, Addr)
}

// MustPort is Port failing t on error.
func MustPort(t testing.TB) int {
	t.Helper()
	return must(t, Port)
}

func must[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
