package client_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/internal/wharftest"
)

// s3ExpiredBody is what S3 answers, with 403, for a pre-signed URL past its
// X-Amz-Expires (shared/seeds/presigned-url-expiry-issue.txt).
const s3ExpiredBody = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code>
<Message>Request has expired</Message><X-Amz-Expires>600</X-Amz-Expires><Expires>2026-11-25T12:00:00Z</Expires><ServerTime>2026-11-25T12:10:03Z</ServerTime><RequestId>4442587FB7D0A2F9</RequestId><HostId>xPp3tTqL</HostId></Error>`

// refuseFirst answers the first signed download it sees the way S3 does
// for an expired URL, then serves the rest with next.
func refuseFirst(next http.Handler, refused *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, "/_wharf/blobs/") && refused.CompareAndSwap(0, 1) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(s3ExpiredBody))
			return
		}
		next.ServeHTTP(w, req)
	})
}

// Storage on its own host refuses a batch answer's URL as S3 does: the
// client asks the batch endpoint again and completes.
func TestS3ExpiredBodyFromStorageHost(t *testing.T) {
	r := wharftest.Start(t)
	var refused atomic.Int64
	storage := httptest.NewServer(refuseFirst(r.Handler, &refused))
	defer storage.Close()
	storageHost := strings.TrimPrefix(storage.URL, "http://")
	var batchCalls atomic.Int64
	fr := front(t, r, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if batchRoute(req) {
				batchCalls.Add(1)
			}
			req.Host = storageHost // the batch answer's URLs point at storage
			next.ServeHTTP(w, req)
		})
	})
	host := strings.TrimPrefix(fr.URL, "http://")
	img := push(t, r.Host, "s3/app:v1", 8192, 3)
	c := client.New(client.Options{Jobs: 1})
	res := pullChecked(t, c, host+"/s3/app:v1", img)
	st := c.Stats()
	if !res.Batch || refused.Load() != 1 || st.ReResolutions != 1 || batchCalls.Load() != 2 {
		t.Errorf("batch %v, refusals %d, re-resolutions %d, batch calls %d; want a batch pull, 1, 1, 2",
			res.Batch, refused.Load(), st.ReResolutions, batchCalls.Load())
	}
}

// Storage behind the registry's own origin (one proxy for both): only the
// body tells an expired URL from the registry refusing the caller. The
// blob GET is redirected, storage answers S3's expiry, the client asks
// the registry again.
func TestS3ExpiredBodySameOrigin(t *testing.T) {
	r := wharftest.Start(t, wharftest.Options{Redirect: true})
	var refused atomic.Int64
	fr := front(t, r, func(next http.Handler) http.Handler { return refuseFirst(next, &refused) })
	host := strings.TrimPrefix(fr.URL, "http://")
	img := push(t, r.Host, "s3/app:v1", 8192, 3)
	c := client.New(client.Options{Jobs: 1, DisableBatch: true})
	pullChecked(t, c, host+"/s3/app:v1", img)
	if st := c.Stats(); refused.Load() != 1 || st.ReResolutions != 1 {
		t.Errorf("refusals %d, re-resolutions %d; want 1 and 1", refused.Load(), st.ReResolutions)
	}
}
