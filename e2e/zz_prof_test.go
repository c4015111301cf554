package e2e

import (
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestZZProfRedirect(t *testing.T) {
	reg, _, _ := startS3(t, true)
	img := randomImage(t, 15, true)
	if err := remote.Write(reg.ref(t, "p/img:v1"), img, reg.opts(t)...); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	var urls []string
	for _, l := range ls {
		urls = append(urls, reg.URL+"/v2/p/img/blobs/"+mustDigest(t, l).String())
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range 3000 {
		for _, u := range urls {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
