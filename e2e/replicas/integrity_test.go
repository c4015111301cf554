package replicas

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRacingWrites is the attack of issue 12: a client with push on its
// own repository races PATCHes of one upload session through both
// replicas, one carrying a victim blob's bytes and one junk of the same
// length, then finishes the upload under the victim's digest. Whatever
// the interleaving, no stored blob may change: the victim's bytes verify
// through both replicas, and every blob in storage hashes to its name.
func testRacingWrites(t *testing.T, c *cluster) {
	A, B := "http://"+c.a.addr, "http://"+c.b.addr
	victim := make([]byte, 512<<10)
	_, _ = rand.Read(victim)
	vd := pushBlob(t, c.lb, "victim/app", victim)

	statuses := map[string]int{}
	rounds := 12
	for round := range rounds {
		junk := make([]byte, len(victim))
		_, _ = rand.Read(junk)
		resp := do(t, "POST", []string{A, B}[round%2]+"/v2/evil/x/blobs/uploads/", nil, nil)
		expect(t, resp, 202)
		loc := resp.Header.Get("Location")

		// Two PATCHes at offset 0, in flight at once, fed in random
		// pieces with random pauses so their writes interleave.
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, body := range [][]byte{victim, junk} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = slowPatch(t, on([]string{A, B}[(round+i)%2], loc), body)
			}()
		}
		wg.Wait()
		for _, code := range codes {
			statuses[fmt.Sprint("PATCH ", code)]++
		}
		u, _ := url.Parse(on([]string{A, B}[round%2], loc))
		q := u.Query()
		q.Set("digest", vd.String())
		u.RawQuery = q.Encode()
		resp = do(t, "PUT", u.String(), nil, nil)
		resp.Body.Close()
		statuses[fmt.Sprint("PUT ", resp.StatusCode)]++

		for _, base := range []string{A, B} {
			if got := expect(t, do(t, "GET", base+"/v2/victim/app/blobs/"+vd.String(), nil, nil), 200); !bytes.Equal(got, victim) {
				t.Fatalf("round %d: the victim's blob changed (read through %s); statuses so far %v", round, base, statuses)
			}
			if resp := do(t, "GET", base+"/v2/evil/x/blobs/"+vd.String(), nil, nil); resp.StatusCode == 200 {
				if got := expect(t, resp, 200); !bytes.Equal(got, victim) {
					t.Fatalf("round %d: evil/x serves other bytes under the victim's digest", round)
				}
			} else {
				resp.Body.Close()
			}
		}
	}
	t.Logf("%d rounds of racing PATCHes: %v", rounds, statuses)
	if statuses["PATCH 202"] == 2*rounds {
		t.Logf("no PATCH ever lost a race (the interleaving never overlapped)")
	}
	if c.storage == "filesystem" {
		verifyStoredBlobs(t, filepath.Join(c.shared, "blobs", "blobs"))
	}
}

// slowPatch sends body as one PATCH at offset 0 in random pieces with
// random pauses, and returns the status.
func slowPatch(t *testing.T, u string, body []byte) int {
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(body); {
			n := min(len(body)-off, 4<<10+mrand.IntN(64<<10))
			if _, err := pw.Write(body[off : off+n]); err != nil {
				return
			}
			off += n
			time.Sleep(time.Duration(mrand.IntN(3)) * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PATCH", u, pr)
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("0-%d", len(body)-1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pr.CloseWithError(err)
		t.Errorf("PATCH %s: %v", u, err)
		return 0
	}
	pr.CloseWithError(io.ErrClosedPipe)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// verifyStoredBlobs hashes every file under the content-addressed tree:
// each must have the digest its path names.
func verifyStoredBlobs(t *testing.T, root string) {
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != d.Name() {
			t.Errorf("stored blob %s hashes to sha256:%x", strings.TrimPrefix(p, root), sum)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no blobs found under %s", root)
	}
	t.Logf("%d stored blobs verified", n)
}

// testRevokeAcrossReplicas: a signed URL of the registry's own route stops
// working on every replica the moment the blob's last link is deleted on
// any one (every download reads the shared database). S3 pre-signed URLs
// cannot be revoked that way: they end when they expire or GC deletes
// the object (docs/signed-urls.md, "What ends a signed URL").
func testRevokeAcrossReplicas(t *testing.T, c *cluster) {
	A, B := "http://"+c.a.addr, "http://"+c.b.addr
	pushImage(t, A, "revoke/app", "v1", "revoked across replicas")
	var urls struct {
		Blobs []struct {
			Digest      string `json:"digest"`
			Kind        string `json:"kind"`
			DownloadURL string `json:"downloadUrl"`
		} `json:"blobs"`
	}
	if err := json.Unmarshal(expect(t, do(t, "GET", A+"/v2/revoke/app/manifests/v1/blobs", nil, nil), 200), &urls); err != nil {
		t.Fatal(err)
	}
	layer := urls.Blobs[len(urls.Blobs)-1]
	expect(t, do(t, "GET", on(B, layer.DownloadURL), nil, nil), 200)
	expect(t, do(t, "DELETE", B+"/v2/revoke/app/blobs/"+layer.Digest, nil, nil), 202)
	for _, base := range []string{A, B} {
		expect(t, do(t, "GET", on(base, layer.DownloadURL), nil, nil), 404)
	}
}
