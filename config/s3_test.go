package config

import (
	"strings"
	"testing"
)

// TestS3EncryptionAndPublicEndpoint: storage.s3.sse, sse_kms_key_id and
// public_endpoint load from the environment, and bad combinations are
// refused at startup with the key named.
func TestS3EncryptionAndPublicEndpoint(t *testing.T) {
	base := []string{"WHARF_STORAGE_DRIVER=s3", "WHARF_STORAGE_S3_BUCKET=b"}
	c, err := Load("", append(base, "WHARF_STORAGE_S3_SSE=aws:kms", "WHARF_STORAGE_S3_SSE_KMS_KEY_ID=alias/wharf",
		"WHARF_STORAGE_S3_PUBLIC_ENDPOINT=https://s3.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Storage.S3; s.SSE != "aws:kms" || s.SSEKMSKeyID != "alias/wharf" || s.PublicEndpoint != "https://s3.example.com" {
		t.Fatalf("loaded %+v", s)
	}
	for _, sse := range []string{"", "AES256"} {
		if _, err := Load("", append(base, "WHARF_STORAGE_S3_SSE="+sse)); err != nil {
			t.Errorf("sse %q: %v", sse, err)
		}
	}
	// The store's own checks (s3.Options.Check), each naming the setting.
	for env, want := range map[string]string{
		"WHARF_STORAGE_S3_SSE=aes256":                     `storage.s3.sse (WHARF_STORAGE_S3_SSE): server-side encryption "aes256"`,
		"WHARF_STORAGE_S3_SSE=kms":                        `storage.s3.sse (WHARF_STORAGE_S3_SSE): server-side encryption "kms"`,
		"WHARF_STORAGE_S3_SSE_KMS_KEY_ID=alias/wharf":     "storage.s3.sse_kms_key_id (WHARF_STORAGE_S3_SSE_KMS_KEY_ID): a KMS key id needs server-side encryption aws:kms",
		"WHARF_STORAGE_S3_PUBLIC_ENDPOINT=s3.example.com": `storage.s3.public_endpoint (WHARF_STORAGE_S3_PUBLIC_ENDPOINT): public endpoint "s3.example.com"`,
		"WHARF_STORAGE_S3_ENDPOINT=minio:9000":            `storage.s3.endpoint (WHARF_STORAGE_S3_ENDPOINT): endpoint "minio:9000"`,
		"WHARF_STORAGE_S3_PART_SIZE=1048576":              "storage.s3.part_size (WHARF_STORAGE_S3_PART_SIZE): part size 1048576: want 5242880 to 16777216 bytes",
		"WHARF_STORAGE_S3_ACCESS_KEY=k":                   "storage.s3.access_key (WHARF_STORAGE_S3_ACCESS_KEY): set both",
		"WHARF_STORAGE_S3_BUCKET=":                        "storage.s3.bucket (WHARF_STORAGE_S3_BUCKET): bucket is required",
	} {
		if _, err := Load("", append(base, env)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", env, err, want)
		}
	}
	if _, err := Load("", append(base, "WHARF_STORAGE_S3_SSE=AES256", "WHARF_STORAGE_S3_SSE_KMS_KEY_ID=k")); err == nil {
		t.Error("a KMS key with SSE-S3 was accepted")
	}
}
