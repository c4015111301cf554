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

	"gopkg.in/yaml.v3"
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
	Limits    Limits   `yaml:"limits"`
	HTTP      HTTP     `yaml:"http"`
	Redirect  Redirect `yaml:"redirect"`
	Signing   Signing  `yaml:"signing"`
}

// Redirect configures 307 redirects of blob GETs to signed URLs.
type Redirect struct {
	Enabled bool          `yaml:"enabled" doc:"answer blob GETs with 307 to a signed URL"`
	Expiry  time.Duration `yaml:"expiry" doc:"lifetime of a redirect's signed URL"`
}

// Signing configures the embedded shape's URL signer.
type Signing struct {
	KeysFile string `yaml:"keys_file" doc:"HMAC keys for signed URLs (default <data_dir>/signing-keys.json, created on first start)"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error"`
	Format string `yaml:"format" doc:"auto (text on a terminal, JSON otherwise), text or json"`
}

// Storage chooses and configures the blob store.
type Storage struct {
	Driver     string     `yaml:"driver" doc:"blob store: filesystem"`
	Filesystem Filesystem `yaml:"filesystem"`
}

// Filesystem configures the filesystem blob store.
type Filesystem struct {
	Root string `yaml:"root" doc:"blob directory (default <data_dir>/blobs)"`
}

// Metadata chooses and configures the metadata store.
type Metadata struct {
	Driver string `yaml:"driver" doc:"metadata store: sqlite"`
	SQLite SQLite `yaml:"sqlite"`
}

// SQLite configures the embedded metadata store.
type SQLite struct {
	Path string `yaml:"path" doc:"database file (default <data_dir>/wharf.db)"`
}

// Limits are the registry's explicit limits.
type Limits struct {
	ManifestMaxBytes int64         `yaml:"manifest_max_bytes" doc:"largest manifest accepted (413 above)"`
	UploadMaxAge     time.Duration `yaml:"upload_max_age" doc:"idle upload sessions older than this are aborted"`
}

// HTTP configures the HTTP server's timeouts.
type HTTP struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" doc:"time to read request headers"`
	IdleTimeout       time.Duration `yaml:"idle_timeout" doc:"keep-alive idle time"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout" doc:"time in-flight requests get to finish on SIGINT/SIGTERM"`
}

// Default returns the configuration of `wharf serve` with nothing set.
func Default() Config {
	return Config{
		Addr:     ":5000",
		DataDir:  "./data",
		Log:      Log{Level: "info", Format: "auto"},
		Storage:  Storage{Driver: "filesystem"},
		Metadata: Metadata{Driver: "sqlite"},
		Limits:   Limits{ManifestMaxBytes: 4 << 20, UploadMaxAge: 24 * time.Hour},
		HTTP:     HTTP{ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ShutdownTimeout: 30 * time.Second},
		Redirect: Redirect{Expiry: 20 * time.Minute},
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
		if !known[k] && !ignoredEnv[k] {
			errs = append(errs, fmt.Errorf("%s: no such setting", k))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if len(errs) > 0 {
		return c, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return c, c.Validate()
}

// ignoredEnv are WHARF_ variables that are not settings (used by tests).
var ignoredEnv = map[string]bool{"WHARF_REQUIRE_SERVERS": true, "WHARF_CACHE": true, "WHARF_ARTIFACTS": true}

// Validate checks values that cannot be checked by type alone.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr must not be empty"))
	}
	if c.Storage.Driver != "filesystem" {
		errs = append(errs, fmt.Errorf("storage.driver %q: the only driver in this build is filesystem", c.Storage.Driver))
	}
	if c.Metadata.Driver != "sqlite" {
		errs = append(errs, fmt.Errorf("metadata.driver %q: the only driver in this build is sqlite", c.Metadata.Driver))
	}
	if c.Redirect.Expiry < time.Minute || c.Redirect.Expiry > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("redirect.expiry %s: want 1m to 168h", c.Redirect.Expiry))
	}
	if c.Limits.ManifestMaxBytes <= 0 {
		errs = append(errs, errors.New("limits.manifest_max_bytes must be positive"))
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
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		errs = append(errs, fmt.Errorf("public_url %q must start with http:// or https://", c.PublicURL))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
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
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
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
