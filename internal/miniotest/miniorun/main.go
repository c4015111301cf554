// Command miniorun starts an S3 server for scripts (the conformance run
// on S3, benchmarks): MinIO, or SeaweedFS with -kind seaweedfs. It writes
// the WHARF_STORAGE_S3_* settings for it as shell assignments to -env,
// then runs until SIGINT/SIGTERM, when it stops the server and removes its
// data.
//
//	go run ./internal/miniotest/miniorun -env /tmp/minio.env &
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/wharf-registry/wharf/internal/miniotest"
)

func main() {
	envFile := flag.String("env", "", "write shell assignments for the server here (required)")
	dir := flag.String("dir", "", "data directory (default: a new temporary one, removed at exit)")
	kind := flag.String("kind", string(miniotest.MinIO), "server: minio or seaweedfs")
	flag.Parse()
	run := miniotest.Run
	switch miniotest.Kind(*kind) {
	case miniotest.MinIO:
	case miniotest.SeaweedFS:
		run = miniotest.RunSeaweedFS
	default:
		log.Fatalf("miniorun: unknown -kind %q", *kind)
	}
	if *envFile == "" {
		log.Fatal("miniorun: -env is required")
	}
	bin, err := miniotest.BinaryOf(miniotest.Kind(*kind))
	if err != nil {
		log.Fatalf("miniorun: %v", err)
	}
	d := *dir
	if d == "" {
		if d, err = os.MkdirTemp("", "wharf-"+*kind+"-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := run(ctx, bin, d)
	if err != nil {
		log.Fatalf("miniorun: %v", err)
	}
	defer s.Stop()
	env := fmt.Sprintf("WHARF_STORAGE_S3_ENDPOINT=%s\nWHARF_STORAGE_S3_REGION=%s\nWHARF_STORAGE_S3_BUCKET=%s\n"+
		"WHARF_STORAGE_S3_ACCESS_KEY=%s\nWHARF_STORAGE_S3_SECRET_KEY=%s\nWHARF_STORAGE_S3_PATH_STYLE=true\n",
		s.Endpoint, miniotest.Region, s.Bucket, s.AccessKey, s.SecretKey)
	tmp := *envFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(env), 0o600); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(tmp, *envFile); err != nil {
		log.Fatal(err)
	}
	log.Printf("miniorun: %s at %s, bucket %s (pid %d)", s.Kind, s.Endpoint, s.Bucket, s.PID())
	<-ctx.Done()
}
