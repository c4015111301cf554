package oci

import (
	"encoding/json"
	"testing"
)

func TestErrorBodyRoundTrip(t *testing.T) {
	e := Errorf(CodeManifestBlobUnknown, "blob unknown to registry").WithDetail(map[string]int{"missingCount": 3})
	r, ok := ParseErrorResponse(e.Body())
	if !ok || len(r.Errors) != 1 {
		t.Fatalf("ParseErrorResponse(%s) = %v, %v", e.Body(), r, ok)
	}
	got := r.Errors[0]
	var d map[string]int
	if got.Code != CodeManifestBlobUnknown || got.Message != e.Message || json.Unmarshal(got.Detail, &d) != nil || d["missingCount"] != 3 {
		t.Fatalf("round trip: %+v", got)
	}
	if b := NewError(CodeUnknown).Body(); string(b) != `{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}` {
		t.Fatalf("no detail: %s", b)
	}
	for _, body := range []string{"", "not json", "{}", `{"errors":[]}`, `{"errors":null}`, `[1]`} {
		if _, ok := ParseErrorResponse([]byte(body)); ok {
			t.Errorf("ParseErrorResponse(%q) accepted", body)
		}
	}
}
