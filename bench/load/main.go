// Command load is Wharf's one benchmark tool: it drives a registry with a
// scenario and reports throughput, latency and the server's own cost (CPU
// time per 1,000 operations from /proc/<pid>/stat, peak RSS from VmHWM
// reset through /proc/<pid>/clear_refs). Every command shares one HTTP
// client setup, one login, one flag set and one statistics code.
//
// Usage:
//
//	load <command> [flags]       run "load help" for the commands
//	load <command> -h            the flags of a command
//
// Registry API scenarios (bench/run.sh and friends): setup, manifest-get,
// manifest-head, tags-list, blob-get, push-small, push-large, batch,
// nplus1. Garbage-collection state and load (bench/scaleout.sh):
// gc-populate, gc-orphans, gc-verify, gc-mixed. The S3 store on MinIO
// (bench/s3.sh): s3. Helpers: report, freeport, wait.
//
// Every loop is bounded in count and time.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/wharf-registry/wharf/internal/freeport"
)

// Flag groups: a command registers the groups it uses.
const (
	fConn    = 1 << iota // -target -repo -clients -timeout -user -password
	fMeasure             // -duration -warmup -requests -label -json -pid -clk-tck
	fImage               // -tag -size -chunk -layer-size -layers -tags
	fGC                  // -state -pushed -blobs -referenced -layers -size -seed -push-every -orphans-gone
	fS3                  // -wharf -only ... (s3 only)
)

type command struct {
	name, help string
	groups     int
	defaults   func(o *opts) // adjusts the defaults before the flags are registered
	run        func(ctx context.Context, o *opts) error
}

func commands() []command {
	api := func(name, help string, d func(o *opts)) command {
		return command{name, help, fConn | fMeasure | fImage, d, func(ctx context.Context, o *opts) error { return scenarioMain(ctx, name, o) }}
	}
	gcDefaults := func(o *opts) { o.repo, o.size, o.layers, o.warmup, o.label = "gc/app", 1024, 10, 0, "mixed" }
	return []command{
		{"setup", "push a test image (-layers N of -layer-size, -tags T tags)", fConn | fImage, nil, setupMain},
		api("manifest-get", "GET /v2/<repo>/manifests/<tag>", nil),
		api("manifest-head", "HEAD /v2/<repo>/manifests/<tag>", nil),
		api("tags-list", "GET /v2/<repo>/tags/list", nil),
		api("blob-get", "GET the image's layers (full bodies), round robin", nil),
		api("push-small", "each op pushes a fresh random blob of -size (POST + monolithic PUT)", nil),
		api("push-large", "one blob of -size streamed from a generator (POST, PATCH(es), PUT)",
			func(o *opts) { o.size, o.timeout = 1<<30, 10*time.Minute }),
		api("batch", "one image's signed blob URLs in one request (the batch endpoint)", nil),
		api("nplus1", "the manifest, then every blob answered 307 (redirects not followed)", nil),
		{"gc-populate", "push -blobs blobs, -referenced of them in manifests of -layers layers; write -state",
			fConn | fGC, gcDefaults, gcPopulate},
		{"gc-orphans", "push -blobs more unreferenced blobs; they become the state's orphans", fConn | fGC, gcDefaults, gcOrphans},
		{"gc-verify", "pull every tagged and -pushed manifest with its blobs; orphans must 404 with -orphans-gone",
			fConn | fGC, gcDefaults, gcVerify},
		{"gc-mixed", "pulls and pushes (one in -push-every, half re-uploading orphans) while GC runs",
			fConn | fMeasure | fGC, gcDefaults, gcMixed},
		{"s3", "start MinIO and Wharf on S3: the rss, commit, pull and push checks", fS3, nil, s3Main},
		{"report", "compare two JSON-lines result files as markdown", 0, nil, nil},
		{"freeport", "print a free TCP port on 127.0.0.1", 0, nil, func(context.Context, *opts) error { return printFreePort() }},
		{"wait", "wait until GET /v2/ answers (-timeout: give up after)", fConn,
			func(o *opts) { o.timeout = 30 * time.Second }, waitMain},
	}
}

func usage(cmds []command) {
	fmt.Fprintf(os.Stderr, "usage: load <command> [flags]\n\ncommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(os.Stderr, "  %-14s %s\n", c.name, c.help)
	}
	fmt.Fprintf(os.Stderr, "\nrun \"load <command> -h\" for the flags of a command\n")
}

func main() {
	cmds := commands()
	if len(os.Args) < 2 {
		usage(cmds)
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	if name == "-h" || name == "--help" || name == "help" {
		usage(cmds)
		return
	}
	var err error
	if name == "report" {
		err = reportMain(args)
	} else {
		err = errUnknown
		for _, c := range cmds {
			if c.name == name {
				err = runCommand(c, args)
			}
		}
	}
	if err == errUnknown {
		fmt.Fprintf(os.Stderr, "load: unknown command %q\n", name)
		usage(cmds)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

var errUnknown = fmt.Errorf("unknown command")

// hardBound ends any command that is still running: every loop also has
// its own count and time bounds.
const hardBound = 30 * time.Minute

func runCommand(c command, args []string) error {
	o := defaultOpts(c.name)
	if c.defaults != nil {
		c.defaults(o)
	}
	fs := flag.NewFlagSet(c.name, flag.ExitOnError)
	o.register(fs, c.groups)
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.groups&fMeasure != 0 && (o.clients < 1 || o.duration <= 0 || o.requests < 1) {
		return fmt.Errorf("-clients, -duration and -requests must be positive")
	}
	bound := hardBound
	if c.groups&fS3 != 0 {
		bound = 3 * hardBound // every check of a full s3 run, on a slow machine
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	return c.run(ctx, o)
}

// opts are the flags of every command; each command registers the groups
// it uses (see register).
type opts struct {
	// fConn
	target, repo, user, password string
	clients                      int
	timeout                      time.Duration
	// fMeasure
	duration, warmup time.Duration
	requests         int64
	pid, label       string
	clkTck           int64
	jsonOut          bool
	// fImage (size and layers are shared with fGC)
	tag                    string
	size, chunk, layerSize int64
	layers, tags           int
	// fGC
	state, pushed     string
	blobs, referenced int
	pushEvery         int
	seed              uint64
	orphansGone       bool
	s3                s3Opts
}

func defaultOpts(name string) *opts {
	return &opts{target: "http://127.0.0.1:5000", repo: "bench/app", clients: 16, timeout: 60 * time.Second,
		duration: 10 * time.Second, warmup: time.Second, requests: 1_000_000, label: name, clkTck: 100,
		tag: "latest", size: 1 << 20, layerSize: 1 << 20, layers: 4, tags: 10,
		state: "gcstate.json", blobs: 10000, referenced: 5000, pushEvery: 5, seed: 1,
		s3: defaultS3Opts()}
}

// register adds the flags of groups to fs, with o's current values as defaults.
func (o *opts) register(fs *flag.FlagSet, groups int) {
	if groups&fConn != 0 {
		fs.StringVar(&o.target, "target", o.target, "registry base URL")
		fs.StringVar(&o.repo, "repo", o.repo, "repository")
		fs.IntVar(&o.clients, "clients", o.clients, "concurrent clients")
		fs.DurationVar(&o.timeout, "timeout", o.timeout, "per-request timeout")
		fs.StringVar(&o.user, "user", "", "log in as this user (Basic, or the token dance for a Bearer challenge)")
		fs.StringVar(&o.password, "password", "", "password for -user")
	}
	if groups&fMeasure != 0 {
		fs.DurationVar(&o.duration, "duration", o.duration, "measured phase length (always bounded)")
		fs.DurationVar(&o.warmup, "warmup", o.warmup, "unmeasured warm-up before the phase (0: none)")
		fs.Int64Var(&o.requests, "requests", o.requests, "stop after this many ops (always bounded)")
		fs.StringVar(&o.label, "label", o.label, "label of the result (for report)")
		fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON line on stdout (and the human summary on stderr)")
		fs.StringVar(&o.pid, "pid", "", "server PID: measure its CPU time and peak RSS")
	}
	if groups&(fMeasure|fS3) != 0 {
		fs.Int64Var(&o.clkTck, "clk-tck", o.clkTck, "clock ticks per second (getconf CLK_TCK)")
	}
	if groups&(fImage|fGC) != 0 {
		fs.Var(sizeFlag{&o.size}, "size", "blob size (units K, M, G = KiB, MiB, GiB)")
		fs.IntVar(&o.layers, "layers", o.layers, "layers per image (setup) or per manifest (gc-populate)")
	}
	if groups&fImage != 0 {
		fs.StringVar(&o.tag, "tag", o.tag, "tag of the test image")
		fs.Var(sizeFlag{&o.chunk}, "chunk", "push-large PATCH size (0: one streamed PATCH)")
		fs.Var(sizeFlag{&o.layerSize}, "layer-size", "setup: size of each layer")
		fs.IntVar(&o.tags, "tags", o.tags, "setup: number of tags (the -tag, then t1, t2, ...)")
	}
	if groups&fGC != 0 {
		fs.StringVar(&o.state, "state", o.state, "state file (written by gc-populate, read by the others)")
		fs.StringVar(&o.pushed, "pushed", "", "gc-mixed: append pushed manifests here (JSON lines); gc-verify: check them")
		fs.IntVar(&o.blobs, "blobs", o.blobs, "gc-populate, gc-orphans: blobs to push")
		fs.IntVar(&o.referenced, "referenced", o.referenced, "gc-populate: how many of them manifests reference")
		fs.Uint64Var(&o.seed, "seed", o.seed, "blob content seed")
		fs.IntVar(&o.pushEvery, "push-every", o.pushEvery, "gc-mixed: one op in N is a push (0: none)")
		fs.BoolVar(&o.orphansGone, "orphans-gone", false, "gc-verify: orphans must answer 404")
	}
	if groups&fS3 != 0 {
		o.s3.register(fs)
	}
}

// client is the registry client of the flags, logged in with -user.
func (o *opts) client(ctx context.Context) (*regClient, error) {
	c, err := newRegClient(o.target, o.repo, o.clients, o.timeout)
	if err != nil {
		return nil, err
	}
	if o.user != "" {
		if err := c.withAuth(ctx, o.user, o.password); err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
	}
	return c, nil
}

// sizeFlag is a flag.Value for sizes such as 512K, 1M or 2G.
type sizeFlag struct{ p *int64 }

func (s sizeFlag) String() string {
	if s.p == nil {
		return ""
	}
	return strings.ReplaceAll(fmtSize(*s.p), " ", "") // parseSize reads it back
}

func (s sizeFlag) Set(v string) (err error) {
	*s.p, err = parseSize(v)
	return err
}

func printFreePort() error {
	p, err := freeport.Port()
	if err == nil {
		fmt.Println(p)
	}
	return err
}

func waitMain(ctx context.Context, o *opts) error {
	c, err := newRegClient(o.target, o.repo, 1, 5*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return c.ping(ctx)
}

// splitList is a comma-separated flag value, empty items dropped.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
