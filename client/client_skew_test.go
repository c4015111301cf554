package client_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/internal/wharftest"
	"github.com/wharf-registry/wharf/registry"
)

// TestClockSkew: a registry whose clock is an hour behind this machine's
// hands out URLs whose expiresAt looks long past here. The client reads
// the answer's Date header and judges expiry on the server's clock: one
// batch call for the whole image, no re-resolution per blob.
func TestClockSkew(t *testing.T) {
	serverNow := func() time.Time { return time.Now().Add(-time.Hour) }
	r := wharftest.Start(t, wharftest.Options{Registry: registry.Options{Now: serverNow}})
	fr := front(t, r, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Date", serverNow().UTC().Format(http.TimeFormat)) // the server's clock, as a real one would send
			next.ServeHTTP(w, req)
		})
	})
	host := strings.TrimPrefix(fr.URL, "http://")
	img := push(t, host, "skew/app:v1", 2048, 6)
	c := client.New(client.Options{})
	pullChecked(t, c, host+"/skew/app:v1", img)
	if st := c.Stats(); st.ReResolutions != 0 || st.Requests != 1 {
		t.Fatalf("stats %+v: want 1 request and no re-resolution despite the skew", st)
	}
}
