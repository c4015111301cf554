package prompt

import (
	"bytes"
	"strings"
	"testing"
)

func TestPasswordFromAPipe(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "s3cret\n", want: "s3cret"},
		{in: "s3cret\r\nignored\n", want: "s3cret"},
		{in: "no newline", want: "no newline"},
		{in: "", err: "empty password"},
		{in: "\n", err: "empty password"},
	} {
		var out bytes.Buffer
		got, err := Password(strings.NewReader(tc.in), &out)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Password(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Password(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("Password(%q) prompted %q on a pipe", tc.in, out.String())
		}
	}
}

func TestLineKeepsAnEmptyLine(t *testing.T) {
	if got, err := Line(strings.NewReader("\n")); err != nil || got != "" {
		t.Fatalf("Line = %q, %v", got, err)
	}
}
