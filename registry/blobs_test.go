package registry_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/wharf-registry/wharf/oci"
	"github.com/wharf-registry/wharf/registry"
)

// TestMountBlob: a mount links a blob another readable repository holds,
// and nothing else.
func TestMountBlob(t *testing.T) {
	const repo = "team/app"
	content := "shared layer"
	d := digest.FromString(content)
	all := func(string) bool { return true }
	cases := []struct {
		name    string
		setup   func(e *env)
		from    string
		canRead func(string) bool
		d       digest.Digest
		want    bool
	}{
		{name: "from a repository that has it", from: "team/base", canRead: all, d: d, want: true,
			setup: func(e *env) { e.blob("team/base", layerType, content) }},
		{name: "from one without it", from: "team/empty", canRead: all, d: d,
			setup: func(e *env) { e.blob("team/base", layerType, content); e.blob("team/empty", layerType, "other") }},
		{name: "from one the caller cannot read", from: "team/base", d: d,
			canRead: func(r string) bool { return r != "team/base" },
			setup:   func(e *env) { e.blob("team/base", layerType, content) }},
		{name: "from an invalid name", from: "Team/../base", canRead: all, d: d,
			setup: func(e *env) { e.blob("team/base", layerType, content) }},
		{name: "from a repository where it was deleted", from: "team/base", canRead: all, d: d,
			setup: func(e *env) {
				e.blob("team/base", layerType, content)
				if err := e.reg.DeleteBlob(e.ctx, "team/base", d); err != nil {
					e.t.Fatal(err)
				}
			}},
		{name: "automatic, from any readable holder", canRead: func(r string) bool { return r == "team/two" }, d: d, want: true,
			setup: func(e *env) { e.blob("team/one", layerType, content); e.blob("team/two", layerType, content) }},
		{name: "automatic, no holder readable", canRead: func(string) bool { return false }, d: d,
			setup: func(e *env) { e.blob("team/one", layerType, content) }},
		{name: "automatic, already in the repository", canRead: func(string) bool { return false }, d: d, want: true,
			setup: func(e *env) { e.blob(repo, layerType, content) }},
		{name: "automatic, unknown everywhere", canRead: all, d: digest.FromString("nowhere")},
		{name: "a manifest digest is not a mountable blob", from: "team/base", canRead: all,
			d: digest.FromBytes(imageManifest(oci.Descriptor{MediaType: configType, Digest: digest.FromString("{}"), Size: 2})),
			setup: func(e *env) {
				e.push("team/base", "v1", imageManifest(e.blob("team/base", configType, "{}")))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{}, false)
			if tc.setup != nil {
				tc.setup(e)
			}
			ok, err := e.reg.MountBlob(e.ctx, repo, tc.d, tc.from, tc.canRead)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.want {
				t.Fatalf("mounted %v, want %v", ok, tc.want)
			}
			info, err := e.reg.StatBlob(e.ctx, repo, tc.d)
			if !tc.want {
				wantCode(t, "stat after a refused mount", err, oci.CodeBlobUnknown)
				return
			}
			if err != nil || info.Size != int64(len(content)) {
				t.Fatalf("mounted blob: %+v, %v", info, err)
			}
			_, rd, err := e.reg.OpenBlob(e.ctx, repo, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			if b, _ := io.ReadAll(rd); string(b) != content {
				t.Errorf("mounted blob reads %q", b)
			}
		})
	}
}

// TestDeleteBlob: a delete unlinks the blob from one repository; a
// manifest's digest through the blob API is the manifest.
func TestDeleteBlob(t *testing.T) {
	const repo = "team/app"
	cases := []struct {
		name  string
		setup func(e *env) digest.Digest // returns the digest to delete
		want  oci.Code
		check func(e *env, d digest.Digest)
	}{
		{name: "unlink a blob", setup: func(e *env) digest.Digest {
			d := e.blob(repo, layerType, "l").Digest
			_, _ = e.reg.StatBlob(e.ctx, repo, d) // cached: the delete must still show
			return d
		}, check: func(e *env, d digest.Digest) {
			_, err := e.reg.StatBlob(e.ctx, repo, d)
			wantCode(e.t, "stat after delete", err, oci.CodeBlobUnknown)
			_, _, err = e.reg.OpenBlob(e.ctx, repo, d)
			wantCode(e.t, "open after delete", err, oci.CodeBlobUnknown)
		}},
		{name: "another repository keeps serving it", setup: func(e *env) digest.Digest {
			e.blob("team/other", layerType, "l")
			return e.blob(repo, layerType, "l").Digest
		}, check: func(e *env, d digest.Digest) {
			if _, err := e.reg.StatBlob(e.ctx, "team/other", d); err != nil {
				e.t.Errorf("team/other lost the blob: %v", err)
			}
			if _, rd, err := e.reg.OpenStoredBlob(e.ctx, d); err != nil {
				e.t.Errorf("signed route lost the blob: %v", err)
			} else {
				rd.Close()
			}
		}},
		{name: "the last link gone: the signed route stops too", setup: func(e *env) digest.Digest {
			return e.blob(repo, layerType, "l").Digest
		}, check: func(e *env, d digest.Digest) {
			_, _, err := e.reg.OpenStoredBlob(e.ctx, d)
			wantCode(e.t, "signed route", err, oci.CodeBlobUnknown)
		}},
		{name: "unknown blob", setup: func(e *env) digest.Digest { return digest.FromString("never") }, want: oci.CodeBlobUnknown},
		{name: "a blob of another repository", setup: func(e *env) digest.Digest {
			e.blob(repo, layerType, "mine")
			return e.blob("team/other", layerType, "theirs").Digest
		}, want: oci.CodeBlobUnknown, check: func(e *env, d digest.Digest) {
			if _, err := e.reg.StatBlob(e.ctx, "team/other", d); err != nil {
				e.t.Errorf("team/other lost its blob: %v", err)
			}
		}},
		{name: "deleted twice", setup: func(e *env) digest.Digest {
			d := e.blob(repo, layerType, "l").Digest
			if err := e.reg.DeleteBlob(e.ctx, repo, d); err != nil {
				e.t.Fatal(err)
			}
			return d
		}, want: oci.CodeBlobUnknown},
		{name: "a manifest's digest deletes the manifest", setup: func(e *env) digest.Digest {
			m := e.image(repo, "x", 1)
			d := e.push(repo, "v1", m).Digest
			info, err := e.reg.StatBlob(e.ctx, repo, d)
			if err != nil || info.Size != int64(len(m)) || info.Key != "" {
				e.t.Fatalf("manifest as a blob: %+v, %v", info, err)
			}
			_, rd, err := e.reg.OpenBlob(e.ctx, repo, d)
			if err != nil {
				e.t.Fatal(err)
			}
			if b, _ := io.ReadAll(rd); string(b) != string(m) {
				e.t.Errorf("manifest read as a blob: %q", b)
			}
			rd.Close()
			return d
		}, check: func(e *env, d digest.Digest) {
			_, err := e.resolve(repo, "v1")
			wantCode(e.t, "tag of the deleted manifest", err, oci.CodeManifestUnknown)
			_, err = e.reg.StatBlob(e.ctx, repo, d)
			wantCode(e.t, "stat the deleted manifest", err, oci.CodeBlobUnknown)
		}},
		{name: "a blob a manifest references can be unlinked", setup: func(e *env) digest.Digest {
			cfg := e.blob(repo, configType, "{}")
			e.push(repo, "v1", imageManifest(cfg))
			return cfg.Digest
		}, check: func(e *env, d digest.Digest) {
			if _, err := e.resolve(repo, "v1"); err != nil {
				e.t.Errorf("the manifest went with its config: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{}, false)
			d := tc.setup(e)
			err := e.reg.DeleteBlob(e.ctx, repo, d)
			wantCode(t, "delete", err, tc.want)
			if tc.check != nil {
				tc.check(e, d)
			}
		})
	}
}

// step is one call of an upload sequence; the session is the one the
// sequence started (or id, when set).
type step struct {
	op     string // append, finish, cancel, status
	id     string
	repo   string // "" is the session's
	start  int64
	length int64 // -1: undeclared; -2: len(body)
	body   *string
	digest digest.Digest
	want   oci.Code
	offset int64 // after a successful append or status: the session's offset
}

func str(s string) *string { return &s }

func appendAt(start int64, body string) step {
	return step{op: "append", start: start, length: -2, body: str(body), offset: start + int64(len(body))}
}

func finish(content string) step {
	return step{op: "finish", digest: digest.FromString(content)}
}

// TestUploadSequences: the session's rules, call by call.
func TestUploadSequences(t *testing.T) {
	const repo = "team/app"
	cases := []struct {
		name  string
		alg   digest.Algorithm
		steps []step
		blob  string        // what the finished blob reads
		none  digest.Digest // a blob that must not be stored
	}{
		{name: "chunks in order", steps: []step{appendAt(0, "hello "), appendAt(6, "world"), {op: "status", offset: 11}, finish("hello world"),
			{op: "status", want: oci.CodeBlobUploadUnknown}}, blob: "hello world"},
		{name: "chunks without a start", steps: []step{
			{op: "append", start: -1, length: -1, body: str("ab"), offset: 2},
			{op: "append", start: -1, length: -1, body: str("cd"), offset: 4}, finish("abcd")}, blob: "abcd"},
		{name: "a chunk at the wrong start", steps: []step{appendAt(0, "abc"),
			{op: "append", start: 0, length: -2, body: str("def"), want: oci.CodeRangeInvalid},
			{op: "append", start: 5, length: -2, body: str("def"), want: oci.CodeRangeInvalid},
			{op: "status", offset: 3}, appendAt(3, "def"), finish("abcdef")}, blob: "abcdef"},
		{name: "wrong digest: the session is gone", steps: []step{appendAt(0, "abc"),
			{op: "finish", digest: digest.FromString("xyz"), want: oci.CodeDigestInvalid},
			{op: "status", want: oci.CodeBlobUploadUnknown},
			{op: "append", start: 3, length: -2, body: str("d"), want: oci.CodeBlobUploadUnknown},
			{op: "finish", digest: digest.FromString("abc"), want: oci.CodeBlobUploadUnknown}},
			none: digest.FromString("abc")},
		{name: "finished twice", steps: []step{appendAt(0, "abc"), finish("abc"),
			{op: "finish", digest: digest.FromString("abc"), want: oci.CodeBlobUploadUnknown}}, blob: "abc"},
		{name: "cancelled", steps: []step{appendAt(0, "abc"), {op: "cancel"},
			{op: "status", want: oci.CodeBlobUploadUnknown},
			{op: "append", start: 3, length: -2, body: str("d"), want: oci.CodeBlobUploadUnknown},
			{op: "cancel", want: oci.CodeBlobUploadUnknown},
			{op: "finish", digest: digest.FromString("abc"), want: oci.CodeBlobUploadUnknown}},
			none: digest.FromString("abc")},
		{name: "a chunk shorter than declared is not recorded", steps: []step{appendAt(0, "ab"),
			{op: "append", start: 2, length: 10, body: str("cd"), want: oci.CodeSizeInvalid},
			{op: "status", offset: 2}, appendAt(2, "xy"), finish("abxy")}, blob: "abxy"},
		{name: "a chunk longer than declared", steps: []step{
			{op: "append", start: 0, length: 1, body: str("cd"), want: oci.CodeSizeInvalid},
			{op: "status", offset: 0}, finish("")}, blob: ""},
		{name: "a last chunk with the finish", steps: []step{appendAt(0, "ab"),
			{op: "finish", start: 2, length: -2, body: str("cd"), digest: digest.FromString("abcd")}}, blob: "abcd"},
		{name: "a last chunk at the wrong start", steps: []step{appendAt(0, "ab"),
			{op: "finish", start: 1, length: -2, body: str("cd"), digest: digest.FromString("abcd"), want: oci.CodeRangeInvalid},
			{op: "status", offset: 2}, finish("ab")}, blob: "ab"},
		{name: "a last chunk of the wrong size keeps the session", steps: []step{appendAt(0, "ab"),
			{op: "finish", start: 2, length: 5, body: str("cd"), digest: digest.FromString("abcd"), want: oci.CodeSizeInvalid},
			{op: "status", offset: 2}, {op: "finish", start: 2, length: -2, body: str("cd"), digest: digest.FromString("abcd")}}, blob: "abcd"},
		{name: "an empty blob", steps: []step{finish("")}, blob: ""},
		{name: "sha512 session", alg: digest.SHA512, steps: []step{appendAt(0, "abc"),
			{op: "finish", digest: digest.SHA512.FromString("abc")}}, blob: "abc"},
		{name: "a sha256 session finished with a sha512 digest", steps: []step{appendAt(0, "abc"),
			{op: "finish", digest: digest.SHA512.FromString("abc")}}, blob: "abc"},
		{name: "another repository's session", steps: []step{appendAt(0, "abc"),
			{op: "status", repo: "team/other", want: oci.CodeBlobUploadUnknown},
			{op: "append", repo: "team/other", start: 3, length: -2, body: str("d"), want: oci.CodeBlobUploadUnknown},
			{op: "finish", repo: "team/other", digest: digest.FromString("abc"), want: oci.CodeBlobUploadUnknown},
			{op: "cancel", repo: "team/other", want: oci.CodeBlobUploadUnknown},
			{op: "status", offset: 3}, finish("abc")}, blob: "abc"},
		{name: "an unknown session", steps: []step{
			{op: "status", id: "0d5f4d6e-6c53-4b8e-9a51-7a3c1a7d0e11", want: oci.CodeBlobUploadUnknown},
			{op: "append", id: "0d5f4d6e-6c53-4b8e-9a51-7a3c1a7d0e11", start: 0, length: -2, body: str("a"), want: oci.CodeBlobUploadUnknown},
			{op: "finish", id: "../../etc", digest: digest.FromString(""), want: oci.CodeBlobUploadUnknown},
			{op: "cancel", id: "nope", want: oci.CodeBlobUploadUnknown}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{}, false)
			u, err := e.reg.StartUpload(e.ctx, repo, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if u.Offset != 0 || u.Repo != repo || u.ID == "" {
				t.Fatalf("new session %+v", u)
			}
			for i, s := range tc.steps {
				id, r := u.ID, repo
				if s.id != "" {
					id = s.id
				}
				if s.repo != "" {
					r = s.repo
				}
				var c registry.Chunk
				if s.body != nil {
					c = registry.Chunk{Body: strings.NewReader(*s.body), Start: s.start, Length: s.length}
					if s.length == -2 {
						c.Length = int64(len(*s.body))
					}
				}
				var got *registry.Upload
				switch s.op {
				case "append":
					got, err = e.reg.AppendUpload(e.ctx, r, id, c)
				case "finish":
					var info registry.BlobInfo
					info, err = e.reg.FinishUpload(e.ctx, r, id, s.digest, c)
					if err == nil && info.Digest != s.digest {
						t.Fatalf("step %d: finished as %s, want %s", i, info.Digest, s.digest)
					}
				case "cancel":
					err = e.reg.CancelUpload(e.ctx, r, id)
				case "status":
					got, err = e.reg.Upload(e.ctx, r, id)
				}
				wantCode(t, fmt.Sprintf("step %d (%s)", i, s.op), err, s.want)
				if err == nil && got != nil && got.Offset != s.offset {
					t.Fatalf("step %d (%s): offset %d, want %d", i, s.op, got.Offset, s.offset)
				}
			}
			if tc.none != "" {
				_, err := e.reg.StatBlob(e.ctx, repo, tc.none)
				wantCode(t, "stat of a blob never finished", err, oci.CodeBlobUnknown)
			}
			var d digest.Digest // what the sequence stored, if anything
			for _, s := range tc.steps {
				if s.op == "finish" && s.want == "" {
					d = s.digest
				}
			}
			if d == "" {
				return
			}
			_, rd, err := e.reg.OpenBlob(e.ctx, repo, d)
			if err != nil {
				t.Fatalf("open the finished blob: %v", err)
			}
			defer rd.Close()
			if b, _ := io.ReadAll(rd); string(b) != tc.blob {
				t.Errorf("blob reads %q, want %q", b, tc.blob)
			}
		})
	}
}

// TestPutBlob: the monolithic upload checks digest and size and keeps
// nothing when either is wrong; the same bytes pushed twice are one object.
func TestPutBlob(t *testing.T) {
	const repo = "team/app"
	cases := []struct {
		name   string
		body   string
		length int64
		d      digest.Digest
		want   oci.Code
	}{
		{"valid", "abc", 3, digest.FromString("abc"), ""},
		{"undeclared length", "abc", -1, digest.FromString("abc"), ""},
		{"wrong digest", "abc", 3, digest.FromString("abd"), oci.CodeDigestInvalid},
		{"short body", "abc", 4, digest.FromString("abc"), oci.CodeSizeInvalid},
		{"long body", "abcd", 3, digest.FromString("abcd"), oci.CodeSizeInvalid},
		{"sha512", "abc", 3, digest.SHA512.FromString("abc"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, registry.Options{}, false)
			info, err := e.reg.PutBlob(e.ctx, repo, tc.d, registry.Chunk{Body: strings.NewReader(tc.body), Start: -1, Length: tc.length})
			wantCode(t, "put", err, tc.want)
			_, statErr := e.reg.StatBlob(e.ctx, repo, tc.d)
			if tc.want != "" {
				wantCode(t, "stat of a refused blob", statErr, oci.CodeBlobUnknown)
				return
			}
			if statErr != nil || info.Size != int64(len(tc.body)) || info.Digest != tc.d {
				t.Fatalf("stored %+v (stat: %v)", info, statErr)
			}
		})
	}

	e := newEnv(t, registry.Options{}, false)
	d := digest.FromString("same")
	a, _ := e.reg.StartUpload(e.ctx, repo, "")
	b, _ := e.reg.StartUpload(e.ctx, "team/other", "")
	ia, errA := e.reg.FinishUpload(e.ctx, repo, a.ID, d, registry.Chunk{Body: strings.NewReader("same"), Start: 0, Length: 4})
	ib, errB := e.reg.FinishUpload(e.ctx, "team/other", b.ID, d, registry.Chunk{Body: strings.NewReader("same"), Start: 0, Length: 4})
	if errA != nil || errB != nil || ia.Key == "" || ia.Key != ib.Key {
		t.Fatalf("two sessions of one blob: %+v (%v), %+v (%v): want one stored object", ia, errA, ib, errB)
	}
	for _, r := range []string{repo, "team/other"} {
		if _, err := e.reg.StatBlob(e.ctx, r, d); err != nil {
			t.Errorf("%s does not serve the blob: %v", r, err)
		}
	}
}
