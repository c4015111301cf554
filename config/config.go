// Package config is Wharf's configuration: defaults, a YAML file, then
// WHARF_* environment variables, then command-line flags, each overriding
// the one before.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/blobstore/s3"
	"github.com/wharf-registry/wharf/signer"
	"github.com/wharf-registry/wharf/signer/cdnhmac"
)

// Config is the whole configuration. The yaml tag of each field is its key
// in the file; its environment variable is WHARF_ followed by the key path
// in upper case joined with '_' (storage.filesystem.root is
// WHARF_STORAGE_FILESYSTEM_ROOT).
type Config struct {
	// Addr is the listen address.
	Addr string `yaml:"addr" doc:"listen address"`
	// DataDir holds everything the embedded shape stores.
	DataDir string `yaml:"data_dir" doc:"directory for the embedded metadata database and blobs"`
	// PublicURL is the externally visible base URL, used in absolute URLs
	// the registry hands out (upload locations).
	PublicURL string   `yaml:"public_url" doc:"external base URL (https://registry.example.com); derived from each request when empty"`
	Log       Log      `yaml:"log"`
	Storage   Storage  `yaml:"storage"`
	Metadata  Metadata `yaml:"metadata"`
	GC        GC       `yaml:"gc"`
	Limits    Limits   `yaml:"limits"`
	HTTP      HTTP     `yaml:"http"`
	Redirect  Redirect `yaml:"redirect"`
	Signing   Signing  `yaml:"signing"`
	Auth      Auth     `yaml:"auth"`
	TLS       TLS      `yaml:"tls"`
	Metrics   Metrics  `yaml:"metrics"`
	Tracing   Tracing  `yaml:"tracing"`
	Proxy     Proxy    `yaml:"proxy"`
}

// Tracing configures OpenTelemetry tracing (off by default).
type Tracing struct {
	Enabled     bool    `yaml:"enabled" doc:"export OpenTelemetry traces over OTLP/HTTP: a span per request named by its route template, child spans for store operations; an incoming traceparent is continued (false: no tracer at all)"`
	Endpoint    string  `yaml:"endpoint" doc:"OTLP/HTTP collector URL (http://127.0.0.1:4318; spans go to <endpoint>/v1/traces); empty: the OTEL_EXPORTER_OTLP_* environment, else http://localhost:4318"`
	SampleRatio float64 `yaml:"sample_ratio" doc:"fraction of new traces recorded, 0 to 1; requests with a traceparent follow its sampled flag"`
	ServiceName string  `yaml:"service_name" doc:"service.name of the exported spans"`
}

// Metrics configures the Prometheus endpoint and the debug endpoints.
type Metrics struct {
	Enabled bool   `yaml:"enabled" doc:"serve Prometheus metrics on /metrics and instrument requests, stores, signer and auth (false: no metrics middleware at all)"`
	Addr    string `yaml:"addr" doc:"separate listen address for /metrics (and pprof), no credentials needed; empty: /metrics on the main listener (admins only with auth basic/token)"`
	Pprof   bool   `yaml:"pprof" doc:"serve /debug/pprof/ on metrics.addr (never on the main listener)"`
}

// Auth configures authentication and authorization.
type Auth struct {
	Mode          AuthMode      `yaml:"mode" doc:"none (everyone may do everything), basic (Basic credentials on /v2/) or token (bearer tokens from the token service)"`
	Htpasswd      string        `yaml:"htpasswd" doc:"users file, bcrypt only (default <data_dir>/htpasswd; manage it with wharf user)"`
	Service       string        `yaml:"service" doc:"service name of the token service (the tokens' audience)"`
	BasicCacheTTL time.Duration `yaml:"basic_cache_ttl" doc:"how long verified Basic credentials are remembered"`
	CacheMaxBytes int64         `yaml:"cache_max_bytes" doc:"memory of each credential cache (verified tokens, Basic credentials); the least used dropped first, expired ones at once"`
	CacheSize     int           `yaml:"cache_size" doc:"failed-login buckets remembered"`
	FailedLogins  FailedLogins  `yaml:"failed_logins"`
	Token         Token         `yaml:"token"`
	// Policy is file-only (no environment variables): see auth.PolicySpec.
	Policy auth.PolicySpec `yaml:"policy"`
}

// FailedLogins shapes the failed-login rate limit (per client address and
// per user).
type FailedLogins struct {
	PerMinute int `yaml:"per_minute" doc:"failed logins allowed per minute per client address and per user (then 429 for that address; for that user only from addresses that failed for it)"`
	Burst     int `yaml:"burst" doc:"failed logins allowed in a burst before the rate applies"`
}

// Token configures the built-in token service and external issuers.
type Token struct {
	Issuer         string        `yaml:"issuer" doc:"iss claim of the tokens the registry issues"`
	KeyFile        string        `yaml:"key_file" doc:"PEM private key (EC or RSA) signing tokens (default <data_dir>/token-key.pem, ES256, created on first start)"`
	TTL            time.Duration `yaml:"ttl" doc:"lifetime of issued tokens"`
	Realm          string        `yaml:"realm" doc:"token endpoint named in challenges (default <public_url>/token, or the request's host)"`
	ExternalIssuer string        `yaml:"external_issuer" doc:"iss of an external token issuer whose tokens are also accepted"`
	ExternalKeys   string        `yaml:"external_keys" doc:"public keys of external_issuer: PEM (keys or certificates) or JWKS file"`
}

// TLS configures HTTPS.
type TLS struct {
	Cert     string `yaml:"cert" doc:"PEM certificate chain: serve HTTPS (TLS 1.2 or newer)"`
	Key      string `yaml:"key" doc:"PEM private key of tls.cert"`
	ClientCA string `yaml:"client_ca" doc:"PEM CA bundle: verify client certificates against it; a verified certificate's CN is the caller's identity"`
}

// Redirect configures 307 redirects of blob GETs to signed URLs.
type Redirect struct {
	Enabled bool          `yaml:"enabled" doc:"answer blob GETs with 307 to a signed URL"`
	Expiry  time.Duration `yaml:"expiry" doc:"lifetime of a redirect's signed URL"`
}

// Signing configures the embedded shape's URL signer.
type Signing struct {
	KeysFile string `yaml:"keys_file" doc:"HMAC keys for signed URLs (default <data_dir>/signing-keys.json, created on first start)"`
	// Keys gives the keys inline, so replicas need no shared file.
	Keys string `yaml:"keys" doc:"HMAC keys inline instead of keys_file: id:base64-secret,... (32+ bytes each; the first signs, all verify; prefer the environment variable)"`
	// Signer chooses who signs blob URLs (redirects, the batch endpoint).
	Signer     SignerKind        `yaml:"signer" doc:"local (the registry's own download route), s3 (pre-signed bucket URLs; needs storage.driver s3), cloudfront or cdn_hmac"`
	S3         SigningS3         `yaml:"s3"`
	CloudFront SigningCloudFront `yaml:"cloudfront"`
	CDNHMAC    SigningCDNHMAC    `yaml:"cdn_hmac"`
}

// SigningS3 configures S3 pre-signed URLs.
type SigningS3 struct {
	ResponseContentType        string `yaml:"response_content_type" doc:"Content-Type the bucket answers pre-signed GETs with (response-content-type)"`
	ResponseContentDisposition string `yaml:"response_content_disposition" doc:"Content-Disposition of pre-signed GETs; {digest} is replaced by the blob's hex digest"`
}

// SigningCloudFront configures CloudFront canned-policy signed URLs.
type SigningCloudFront struct {
	BaseURL        string `yaml:"base_url" doc:"distribution URL (https://d111111abcdef8.cloudfront.net); its origin is the blob bucket"`
	KeyPairID      string `yaml:"key_pair_id" doc:"CloudFront public key id"`
	PrivateKeyFile string `yaml:"private_key_file" doc:"PEM RSA private key of key_pair_id"`
	StripPrefix    string `yaml:"strip_prefix" doc:"removed from object keys (the storage prefix, when the origin path has it)"`
}

// SigningCDNHMAC configures HMAC-token signed URLs for a CDN.
type SigningCDNHMAC struct {
	BaseURL        string `yaml:"base_url" doc:"CDN URL the client calls (https://cdn.example.com[/path])"`
	Secret         string `yaml:"secret" doc:"shared HMAC-SHA256 secret, 16+ bytes (prefer the environment variable)"`
	KeyID          string `yaml:"key_id" doc:"key id sent in key_id_param (empty: none)"`
	ExpiresParam   string `yaml:"expires_param" doc:"query parameter for the expiry (Unix seconds)"`
	SignatureParam string `yaml:"signature_param" doc:"query parameter for hex(HMAC-SHA256(secret, path + expires))"`
	KeyIDParam     string `yaml:"key_id_param" doc:"query parameter for key_id"`
	StripPrefix    string `yaml:"strip_prefix" doc:"removed from object keys (the storage prefix, when the CDN origin path has it)"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error"`
	Format string `yaml:"format" doc:"auto (text on a terminal, JSON otherwise), text or json"`
	Access string `yaml:"access" doc:"level of the one access log line per request: info, debug or off (5xx are always logged at error unless off)"`
}

// Storage chooses and configures the blob store.
type Storage struct {
	Driver     StorageDriver `yaml:"driver" doc:"blob store: filesystem or s3"`
	Filesystem Filesystem    `yaml:"filesystem"`
	S3         S3            `yaml:"s3"`
}

// S3 configures the S3-compatible blob store (AWS S3, MinIO, R2, Ceph RGW).
type S3 struct {
	Endpoint  string `yaml:"endpoint" doc:"S3 API URL (MinIO http://host:9000, R2 https://<account>.r2.cloudflarestorage.com); empty for AWS"`
	Region    string `yaml:"region" doc:"bucket region (auto for R2)"`
	Bucket    string `yaml:"bucket" doc:"bucket holding blobs and upload state"`
	Prefix    string `yaml:"prefix" doc:"key prefix inside the bucket (wharf/)"`
	AccessKey string `yaml:"access_key" doc:"access key id; empty uses the AWS default credential chain (env, profile, IAM role)"`
	SecretKey string `yaml:"secret_key" doc:"secret access key (prefer the environment variable)"`
	PathStyle bool   `yaml:"path_style" doc:"path-style addressing <endpoint>/<bucket> (MinIO)"`
	PartSize  int64  `yaml:"part_size" doc:"multipart part size in bytes, 5 MiB to 16 MiB: the memory an upload request holds"`
	// PublicEndpoint exists because SigV4 signs the host: URLs handed to
	// clients must be signed for the host they call, which may not be the
	// one the registry reaches the storage at.
	PublicEndpoint string `yaml:"public_endpoint" doc:"S3 URL clients download pre-signed URLs from (https://s3.example.com) when it differs from endpoint; empty: endpoint"`
	SSE            string `yaml:"sse" doc:"server-side encryption of stored objects: empty (off), AES256 (SSE-S3) or aws:kms (SSE-KMS)"`
	SSEKMSKeyID    string `yaml:"sse_kms_key_id" doc:"KMS key id, ARN or alias for sse aws:kms; empty: the account's default key"`
}

// Filesystem configures the filesystem blob store.
type Filesystem struct {
	Root string `yaml:"root" doc:"blob directory (default <data_dir>/blobs)"`
}

// Metadata chooses and configures the metadata store.
type Metadata struct {
	Driver   MetadataDriver `yaml:"driver" doc:"metadata store: sqlite (embedded) or postgres (scale-out)"`
	SQLite   SQLite         `yaml:"sqlite"`
	Postgres Postgres       `yaml:"postgres"`
}

// Postgres configures the PostgreSQL metadata store.
type Postgres struct {
	DSN      string `yaml:"dsn" doc:"PostgreSQL URL (postgres://user:pass@host:5432/wharf?sslmode=require) or key=value string"`
	MaxConns int    `yaml:"max_conns" doc:"connection pool size per replica"`
}

// GC configures online garbage collection (also run by wharf gc).
type GC struct {
	Interval      time.Duration  `yaml:"interval" doc:"run a collection pass this often in serve, on one replica at a time (0: never; run wharf gc instead)"`
	ReviewDelay   time.Duration  `yaml:"review_delay" doc:"a blob is collected only when unreferenced and not uploaded or mounted for this long"`
	Untagged      UntaggedPolicy `yaml:"untagged" doc:"keep or delete manifests that no tag, index or live subject references"`
	UntaggedAfter time.Duration  `yaml:"untagged_after" doc:"age an untagged manifest must reach before gc.untagged: delete removes it"`
}

// SQLite configures the embedded metadata store.
type SQLite struct {
	Path string `yaml:"path" doc:"database file (default <data_dir>/wharf.db)"`
}

// Limits are the registry's explicit limits.
type Limits struct {
	ManifestMaxBytes int64         `yaml:"manifest_max_bytes" doc:"largest manifest accepted (413 above)"`
	UploadMaxAge     time.Duration `yaml:"upload_max_age" doc:"idle upload sessions older than this are aborted"`
	// ManifestMaxReferences bounds the work of one manifest PUT: each
	// reference is looked up in the metadata store.
	ManifestMaxReferences int `yaml:"manifest_max_references" doc:"most blobs and child manifests one manifest may reference (400 MANIFEST_INVALID above)"`
	// Rate limits, per caller (authenticated user, else client address).
	Rate Rate `yaml:"rate"`
	// ConcurrentUploads caps upload requests in flight (429 above).
	ConcurrentUploads  int   `yaml:"concurrent_uploads" doc:"upload requests (POST, PATCH, PUT with blob bytes) served at once; more get 429 with Retry-After (0: no cap)"`
	UploadBodyMaxBytes int64 `yaml:"upload_body_max_bytes" doc:"largest body of one upload request (413 SIZE_INVALID above; 0: no limit)"`
	// Per caller and per body, so that slow or many uploads of one client
	// cannot hold every slot.
	ConcurrentUploadsPerClient int           `yaml:"concurrent_uploads_per_client" doc:"upload requests one caller (user, else client address) may have in flight; more get 429 (0: no cap)"`
	UploadMinRate              int64         `yaml:"upload_min_rate" doc:"an upload body delivering fewer bytes per second than this over upload_rate_window is cut off (0: no minimum)"`
	UploadRateWindow           time.Duration `yaml:"upload_rate_window" doc:"window over which upload_min_rate is judged"`
	UploadMaxDuration          time.Duration `yaml:"upload_max_duration" doc:"longest time one upload request's body may take (0: no limit)"`
	CacheMaxBytes              int64         `yaml:"cache_max_bytes" doc:"memory of the registry's caches together (manifests, tag lists, resolved images, batch answers, blob lookups, signatures); the least used dropped first"`
}

// Rate configures per-caller rate limits (requests per second and burst,
// per authenticated user or, for anonymous callers, per client address).
// 0 turns a limit off.
type Rate struct {
	Pull       int `yaml:"pull" doc:"pull requests (GET/HEAD of manifests, blobs, tags, referrers, catalog) per second per caller (0: no limit)"`
	PullBurst  int `yaml:"pull_burst" doc:"pull requests allowed in a burst (default 2 x pull)"`
	Push       int `yaml:"push" doc:"push and delete requests per second per caller (0: no limit)"`
	PushBurst  int `yaml:"push_burst" doc:"push requests allowed in a burst (default 2 x push)"`
	Batch      int `yaml:"batch" doc:"batch-endpoint calls per second per caller (0: no limit)"`
	BatchBurst int `yaml:"batch_burst" doc:"batch-endpoint calls allowed in a burst (default 2 x batch)"`
	Clients    int `yaml:"clients" doc:"callers whose buckets are remembered (least recently seen forgotten first)"`
}

// HTTP configures the HTTP server's timeouts.
type HTTP struct {
	ReadHeaderTimeout   time.Duration `yaml:"read_header_timeout" doc:"time to read request headers"`
	IdleTimeout         time.Duration `yaml:"idle_timeout" doc:"keep-alive idle time"`
	ShutdownTimeout     time.Duration `yaml:"shutdown_timeout" doc:"time in-flight requests get to finish on SIGINT/SIGTERM"`
	RequestTimeout      time.Duration `yaml:"request_timeout" doc:"time to read and answer a request that moves no blob bytes (manifests, tags, batch; 0: none)"`
	TransferIdleTimeout time.Duration `yaml:"transfer_idle_timeout" doc:"a blob upload or download that moves no byte for this long is cut off (0: none)"`
	DrainDelay          time.Duration `yaml:"drain_delay" doc:"on SIGINT/SIGTERM, /readyz fails at once and the listener stays open this long before shutdown (skipped when nothing polled /readyz)"`
	RequestID           bool          `yaml:"request_id" doc:"set X-Request-Id on every response and request_id in its log lines"`
	TrustedProxies      string        `yaml:"trusted_proxies" doc:"comma-separated CIDRs of proxies whose X-Forwarded-For (rate limits, failed-login limits, the access log client) and X-Request-Id are believed"`
}

// Default returns the configuration of `wharf serve` with nothing set.
func Default() Config {
	return Config{
		Addr:     ":5000",
		DataDir:  "./data",
		Log:      Log{Level: "info", Format: "auto", Access: "info"},
		Storage:  Storage{Driver: "filesystem", S3: S3{Region: "us-east-1", PartSize: 8 << 20}},
		Metadata: Metadata{Driver: "sqlite", Postgres: Postgres{MaxConns: 16}},
		GC:       GC{ReviewDelay: 24 * time.Hour, Untagged: "keep", UntaggedAfter: 24 * time.Hour},
		Limits: Limits{ManifestMaxBytes: 4 << 20, ManifestMaxReferences: 10000, UploadMaxAge: 24 * time.Hour, ConcurrentUploads: 1000, CacheMaxBytes: 128 << 20,
			ConcurrentUploadsPerClient: 64, UploadMinRate: 1024, UploadRateWindow: time.Minute, UploadMaxDuration: 2 * time.Hour,
			Rate: Rate{Clients: 10000}},
		HTTP: HTTP{ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ShutdownTimeout: 30 * time.Second,
			RequestTimeout: time.Minute, TransferIdleTimeout: time.Minute, DrainDelay: 5 * time.Second, RequestID: true},
		Metrics:  Metrics{Enabled: true},
		Tracing:  Tracing{SampleRatio: 0.1, ServiceName: "wharf"},
		Redirect: Redirect{Expiry: 20 * time.Minute},
		Signing: Signing{Signer: "local", CDNHMAC: SigningCDNHMAC{
			ExpiresParam: cdnhmac.DefaultExpiresParam, SignatureParam: cdnhmac.DefaultSignatureParam, KeyIDParam: cdnhmac.DefaultKeyIDParam}},
		Auth: Auth{
			Mode: "none", Service: "wharf", BasicCacheTTL: time.Minute, CacheSize: 10000, CacheMaxBytes: 16 << 20,
			FailedLogins: FailedLogins{PerMinute: 10, Burst: 20},
			Token:        Token{Issuer: "wharf-token-service", TTL: 5 * time.Minute},
		},
	}
}

// Load builds the configuration from defaults, the YAML file at path (if
// path is not empty) and the environment.
func Load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) /* an empty file */ {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "WHARF_") {
			env[k] = v
		}
	}
	known := map[string]bool{}
	for _, u := range c.Proxy.Upstreams {
		known[ProxyPasswordEnv(u.Prefix)] = true // read when the upstream is built
	}
	var errs []error
	walk(reflect.ValueOf(&c).Elem(), "WHARF", "", func(f field) {
		known[f.env] = true
		v, ok := env[f.env]
		if !ok {
			return
		}
		if err := setValue(f.value, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.env, err))
		}
	})
	for k := range env {
		if !known[k] {
			errs = append(errs, fmt.Errorf("%s: no such setting", k))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if len(errs) > 0 {
		return c, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return c, c.Validate()
}

// Validate checks values that cannot be checked by type alone.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr must not be empty"))
	}
	errs = append(errs, c.validateStorage()...)
	errs = append(errs, c.validateProxy()...)
	if err := oneOf("metadata.driver", c.Metadata.Driver, MetadataSQLite, MetadataPostgres); err != nil {
		errs = append(errs, err)
	}
	if c.Metadata.Driver == MetadataPostgres {
		if c.Metadata.Postgres.DSN == "" {
			errs = append(errs, errors.New("metadata.postgres.dsn (WHARF_METADATA_POSTGRES_DSN) is required with metadata.driver postgres"))
		}
		if c.Metadata.Postgres.MaxConns <= 0 {
			errs = append(errs, errors.New("metadata.postgres.max_conns must be positive"))
		}
	}
	if c.GC.Interval < 0 || c.GC.ReviewDelay < 0 || c.GC.UntaggedAfter < 0 {
		errs = append(errs, errors.New("gc.interval, gc.review_delay and gc.untagged_after must not be negative"))
	}
	if err := oneOf("gc.untagged", c.GC.Untagged, UntaggedKeep, UntaggedDelete); err != nil {
		errs = append(errs, err)
	}
	if c.Redirect.Expiry < time.Minute || c.Redirect.Expiry > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("redirect.expiry %s: want 1m to 168h", c.Redirect.Expiry))
	}
	if c.Limits.ManifestMaxBytes <= 0 {
		errs = append(errs, errors.New("limits.manifest_max_bytes must be positive"))
	}
	if c.Limits.ManifestMaxReferences <= 0 {
		errs = append(errs, errors.New("limits.manifest_max_references must be positive"))
	}
	if c.Limits.CacheMaxBytes <= 0 {
		errs = append(errs, errors.New("limits.cache_max_bytes must be positive"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want auto, text or json", c.Log.Format))
	}
	errs = append(errs, c.validateAuth()...)
	errs = append(errs, c.validateRuntime()...)
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		errs = append(errs, fmt.Errorf("public_url %q must start with http:// or https://", c.PublicURL))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

func (c Config) validateAuth() []error {
	var errs []error
	a := c.Auth
	if err := oneOf("auth.mode", a.Mode, AuthNone, AuthBasic, AuthToken); err != nil {
		errs = append(errs, err)
	}
	if a.Token.TTL < time.Minute || a.Token.TTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("auth.token.ttl %s: want 1m to 24h", a.Token.TTL))
	}
	if a.BasicCacheTTL < 0 || a.CacheSize <= 0 || a.CacheMaxBytes <= 0 || a.FailedLogins.PerMinute <= 0 || a.FailedLogins.Burst <= 0 {
		errs = append(errs, errors.New("auth.basic_cache_ttl must not be negative; auth.cache_size, auth.cache_max_bytes and auth.failed_logins.* must be positive"))
	}
	if (a.Token.ExternalIssuer == "") != (a.Token.ExternalKeys == "") {
		errs = append(errs, errors.New("auth.token.external_issuer and auth.token.external_keys go together"))
	}
	if a.Service == "" || a.Token.Issuer == "" {
		errs = append(errs, errors.New("auth.service and auth.token.issuer must not be empty"))
	}
	if _, err := auth.CompilePolicy(a.Policy); err != nil {
		errs = append(errs, err)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("tls.cert and tls.key go together"))
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		errs = append(errs, errors.New("tls.client_ca needs tls.cert and tls.key"))
	}
	return errs
}

// field is one leaf setting.
type field struct {
	key, env, doc string
	value         reflect.Value
}

func walk(v reflect.Value, envPrefix, keyPrefix string, fn func(field)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		env := envPrefix + "_" + strings.ToUpper(name)
		key := name
		if keyPrefix != "" {
			key = keyPrefix + "." + name
		}
		fv := v.Field(i)
		if k := fv.Kind(); k == reflect.Slice || k == reflect.Map {
			continue // lists and maps (auth.policy) are set in the file only
		}
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Duration(0)) {
			walk(fv, env, key, fn)
			continue
		}
		fn(field{key: key, env: env, doc: sf.Tag.Get("doc"), value: fv})
	}
}

func setValue(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case int64, int:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	default:
		if v.Kind() != reflect.String { // the typed modes are strings
			return fmt.Errorf("unsupported type %s", v.Type())
		}
		v.SetString(s)
	}
	return nil
}

// Setting describes one configuration key for the reference docs.
type Setting struct {
	Key, Env, Default, Doc string
}

// Reference lists every setting with its environment variable and default.
func Reference() []Setting {
	c := Default()
	var out []Setting
	walk(reflect.ValueOf(&c).Elem(), "WHARF", "", func(f field) {
		out = append(out, Setting{Key: f.key, Env: f.env, Default: fmt.Sprint(f.value.Interface()), Doc: f.doc})
	})
	return out
}

// S3Options are the blob store's options of storage.s3 (and of the
// signing.s3 response overrides its pre-signed URLs carry).
func (c Config) S3Options() s3.Options {
	o := c.Storage.S3
	return s3.Options{
		Endpoint: o.Endpoint, Region: o.Region, Bucket: o.Bucket, Prefix: o.Prefix,
		AccessKey: o.AccessKey, SecretKey: o.SecretKey, PathStyle: o.PathStyle, PartSize: o.PartSize,
		PublicEndpoint: o.PublicEndpoint, SSE: o.SSE, SSEKMSKeyID: o.SSEKMSKeyID,
		ResponseContentType:        c.Signing.S3.ResponseContentType,
		ResponseContentDisposition: c.Signing.S3.ResponseContentDisposition,
	}
}

// settingError names the setting of section (a struct whose fields are
// named like the store's options) that a store's *OptionError is about.
func settingError(section string, fields any, err error) error {
	var oe *s3.OptionError
	if !errors.As(err, &oe) {
		return fmt.Errorf("%s: %w", section, err)
	}
	key := section
	if f, ok := reflect.TypeOf(fields).FieldByName(oe.Option); ok {
		key += "." + f.Tag.Get("yaml")
	}
	env := "WHARF_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
	return fmt.Errorf("%s (%s): %w", key, env, oe.Err)
}

// validateStorage checks storage.* and signing.signer.
func (c Config) validateStorage() []error {
	var errs []error
	if err := oneOf("storage.driver", c.Storage.Driver, StorageFilesystem, StorageS3); err != nil {
		errs = append(errs, err)
	}
	if c.Storage.Driver == StorageS3 {
		// The store's own rules, so both refuse the same settings.
		if err := c.S3Options().Check(); err != nil {
			errs = append(errs, settingError("storage.s3", S3{}, err))
		}
	}
	if c.Signing.Keys != "" {
		if c.Signing.KeysFile != "" {
			errs = append(errs, errors.New("signing.keys and signing.keys_file: set one"))
		}
		if _, _, err := signer.ParseKeys(c.Signing.Keys); err != nil {
			errs = append(errs, fmt.Errorf("signing.keys (WHARF_SIGNING_KEYS): %w", err))
		}
	}
	if err := oneOf("signing.signer", c.Signing.Signer, SignerLocal, SignerS3, SignerCloudFront, SignerCDNHMAC); c.Signing.Signer != "" && err != nil {
		errs = append(errs, err)
	}
	switch c.Signing.Signer {
	case SignerS3:
		if c.Storage.Driver != StorageS3 {
			errs = append(errs, errors.New("signing.signer s3 needs storage.driver s3"))
		}
	case SignerCloudFront:
		cf := c.Signing.CloudFront
		if cf.BaseURL == "" || cf.KeyPairID == "" || cf.PrivateKeyFile == "" {
			errs = append(errs, errors.New("signing.signer cloudfront needs signing.cloudfront.base_url, key_pair_id and private_key_file"))
		}
	case SignerCDNHMAC:
		if c.Signing.CDNHMAC.BaseURL == "" || len(c.Signing.CDNHMAC.Secret) < 16 {
			errs = append(errs, errors.New("signing.signer cdn_hmac needs signing.cdn_hmac.base_url and a secret of 16+ bytes"))
		}
	}
	return errs
}
