package miniotest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// SeaweedFSVersion is the SeaweedFS module version scripts/lib.sh builds
// (keep the two in sync). Its release tags are not semver ("4.01"), so
// the Go module proxy serves pseudo-versions only; this is the newest.
const SeaweedFSVersion = "v0.0.0-20261109003541-7506e5f91cd6"

// RunSeaweedFS starts `weed mini` (master, volume server, filer and S3
// gateway in one process) from bin over dir, every listener on 127.0.0.1
// and everything the tests do not use (WebDAV, the admin UI, the Iceberg
// and Lance endpoints, telemetry) off. Call Stop when done.
func RunSeaweedFS(ctx context.Context, bin, dir string) (*Server, error) {
	s := newServer(SeaweedFS, dir)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	// ports: s3, s3 gRPC, master, master gRPC, volume, volume gRPC,
	// filer, filer gRPC (gRPC ports default to HTTP+10000, which may
	// be taken or out of range).
	return s.launch(ctx, "/healthz", 8, func(p []int) *exec.Cmd {
		port := func(i int) string { return strconv.Itoa(p[i]) }
		cmd := exec.Command(bin, "mini", "-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
			"-s3.port="+port(0), "-s3.port.grpc="+port(1),
			"-master.port="+port(2), "-master.port.grpc="+port(3),
			"-volume.port="+port(4), "-volume.port.grpc="+port(5),
			"-filer.port="+port(6), "-filer.port.grpc="+port(7),
			"-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
			"-master.telemetry=false",
			fmt.Sprintf("-filer.localSocket=%s/filer.sock", dir), fmt.Sprintf("-s3.localSocket=%s/s3.sock", dir))
		// The gateway's one identity: an admin with these credentials.
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.SecretKey,
			"S3_BUCKET=", "AWS_REGION="+Region)
		return cmd
	})
}
