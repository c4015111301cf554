package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	// The command name may hold spaces and ')'.
	stat := "1234 (we ird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 8 0 100 0 0\n"
	got, err := parseStatTicks([]byte(stat))
	if err != nil || got != 325 {
		t.Fatalf("parseStatTicks = %d, %v; want 325", got, err)
	}
	if _, err := parseStatTicks([]byte("1234 (x) S 1")); err == nil {
		t.Fatal("short stat: no error")
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\twharf\nVmPeak:\t  900000 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   20000 kB\n"
	if got, err := parseStatusKB([]byte(status), "VmHWM"); err != nil || got != 23456 {
		t.Fatalf("VmHWM = %d, %v", got, err)
	}
	if _, err := parseStatusKB([]byte(status), "VmSwap"); err == nil {
		t.Fatal("missing field: no error")
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := procCPUTicks("self"); err != nil {
		t.Skip("no /proc:", err)
	}
	if kb, err := procStatusKB("self", "VmHWM"); err != nil || kb <= 0 {
		t.Fatalf("VmHWM of self = %d, %v", kb, err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "123": 123, "64K": 64 << 10, "1M": 1 << 20, "1MiB": 1 << 20, "2g": 2 << 30, "256MB": 256 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "1T", "x1M"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
}

// The stream's bytes and digest must not depend on how its reader sizes
// buffers (net/http and io.LimitReader chunking vary).
func TestStreamDeterministic(t *testing.T) {
	const n = 1<<20 + 13
	a := newStream(42, n)
	var bufA bytes.Buffer
	if _, err := io.CopyBuffer(&bufA, struct{ io.Reader }{a}, make([]byte, 32<<10)); err != nil {
		t.Fatal(err)
	}
	b := newStream(42, n)
	var bufB bytes.Buffer
	for {
		p := make([]byte, 1000) // not a multiple of 8
		k, err := b.Read(p)
		bufB.Write(p[:k])
		if err == io.EOF {
			break
		}
	}
	if bufA.Len() != n || !bytes.Equal(bufA.Bytes(), bufB.Bytes()) {
		t.Fatalf("streams differ: %d vs %d bytes", bufA.Len(), bufB.Len())
	}
	sum := sha256.Sum256(bufA.Bytes())
	if want := "sha256:" + hexString(sum[:]); a.Sum() != want || b.Sum() != want {
		t.Fatalf("Sum = %s / %s; want %s", a.Sum(), b.Sum(), want)
	}
	if c := newStream(43, 64); bytes.Equal(mustRead(t, c), bufA.Bytes()[:64]) {
		t.Fatal("different seeds gave the same bytes")
	}
}

func mustRead(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunBounded(t *testing.T) {
	p := run(4, 5*time.Second, 100, func(_ context.Context, _ int, _ int64) (int64, error) { return 10, nil })
	if p.ops != 100 || p.bytes != 1000 || p.errs != 0 {
		t.Fatalf("run by count: ops %d bytes %d errs %d", p.ops, p.bytes, p.errs)
	}
	start := time.Now()
	p = run(2, 50*time.Millisecond, 1<<40, func(_ context.Context, _ int, _ int64) (int64, error) {
		time.Sleep(time.Millisecond)
		return 0, nil
	})
	if d := time.Since(start); d > 2*time.Second || p.ops == 0 {
		t.Fatalf("run by time took %v for %d ops", d, p.ops)
	}
}

func TestAggregate(t *testing.T) {
	rs := []Result{{Label: "x", OpsPerSec: 10, PeakRSSKiB: 5, Ops: 1}, {Label: "x", OpsPerSec: 30, PeakRSSKiB: 9, Ops: 1, Errors: 2}, {Label: "x", OpsPerSec: 20, PeakRSSKiB: 1, Ops: 1}}
	a := aggregate(rs)
	if a.OpsPerSec != 20 || a.PeakRSSKiB != 9 || a.Ops != 3 || a.Errors != 2 || a.Runs != 3 {
		t.Fatalf("aggregate = %+v", a)
	}
}

func TestWriteReport(t *testing.T) {
	a := map[string]Result{"manifest-get": {Label: "manifest-get", Clients: 16, Ops: 100, OpsPerSec: 6000, CPUmsPer1kOps: 5}}
	b := map[string]Result{"manifest-get": {Label: "manifest-get", Clients: 16, Ops: 100, OpsPerSec: 1000, CPUmsPer1kOps: 100}}
	var out strings.Builder
	writeReport(&out, "Wharf", "Distribution", a, b)
	for _, want := range []string{"| manifest GET by tag, 16 clients | req/s | 6000 | 1000 | 6.00× | ≥ 5× | yes |", "| 0.050× | ≤ 0.1× | yes |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func BenchmarkWyrandFill(b *testing.B) {
	p := make([]byte, 1<<20)
	r := wyrand{s: 1}
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		r.fill(p)
	}
}

func BenchmarkStream(b *testing.B) {
	p := make([]byte, 32<<10)
	b.SetBytes(int64(len(p)))
	s := newStream(1, 1<<62)
	for b.Loop() {
		_, _ = s.Read(p)
	}
}

func TestRunLoopKinds(t *testing.T) {
	kindOf := func(i int64) int { return int(i % 3 / 2) } // 0, 0, 1, 0, 0, 1, ...
	p := runLoop(3, 5*time.Second, 30, loop{op: func(context.Context, int, int64) (int64, error) { return 1, nil }, kinds: 2, kindOf: kindOf})
	if p.ops != 30 || len(p.lat[0]) != 20 || len(p.lat[1]) != 10 || len(p.all()) != 30 {
		t.Fatalf("ops %d, by kind %d + %d", p.ops, len(p.lat[0]), len(p.lat[1]))
	}
}

func TestParallelStopsAtFirstError(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	err := parallel(context.Background(), 1_000_000, 4, func(_ context.Context, i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls.Load() > 1000 {
		t.Fatalf("parallel = %v after %d calls", err, calls.Load())
	}
	var n atomic.Int64
	if err := parallel(context.Background(), 50, 8, func(context.Context, int) error { n.Add(1); return nil }); err != nil || n.Load() != 50 {
		t.Fatalf("parallel = %v after %d calls, want 50", err, n.Load())
	}
}

func TestLatencies(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p50, p99, mx := latencies(d); p50 != 50 || p99 != 99 || mx != 100 {
		t.Fatalf("latencies = %v %v %v", p50, p99, mx)
	}
	if p50, p99, mx := latencies(nil); p50+p99+mx != 0 {
		t.Fatal("latencies of nothing are not zero")
	}
}

// A raw stream yields the hashing stream's bytes, and streamDigest their digest.
func TestRawStreamAndDigest(t *testing.T) {
	const n = 3<<20 + 5
	raw, hashed := mustRead(t, newRawStream(7, n)), newStream(7, n)
	if !bytes.Equal(raw, mustRead(t, hashed)) {
		t.Fatal("raw and hashing streams differ")
	}
	if d := streamDigest(7, n); d != hashed.Sum() || d != sha256Digest(raw) {
		t.Fatalf("streamDigest = %s, stream %s, bytes %s", d, hashed.Sum(), sha256Digest(raw))
	}
	if bytes.Equal(genBlob(blobSeed(1, 1), 64), genBlob(blobSeed(1, 2), 64)) {
		t.Fatal("blobSeed gave two blobs the same bytes")
	}
}

func TestSizeFlag(t *testing.T) {
	var o opts
	o.size = 1 << 20
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o.register(fs, fImage)
	if def := fs.Lookup("size").DefValue; def != "1MiB" {
		t.Fatalf("default shown as %q", def)
	}
	if err := fs.Parse([]string{"-size", "4K", "-chunk", "2M"}); err != nil || o.size != 4<<10 || o.chunk != 2<<20 {
		t.Fatalf("parse: %v, size %d chunk %d", err, o.size, o.chunk)
	}
	if err := fs.Parse([]string{"-size", "1T"}); err == nil {
		t.Fatal("-size 1T: no error")
	}
}
