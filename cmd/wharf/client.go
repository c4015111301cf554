package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/wharf-registry/wharf/batch"
	"github.com/wharf-registry/wharf/client"
	"github.com/wharf-registry/wharf/internal/prompt"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	jobs          int
	expiry        time.Duration
	json, verbose bool
	user          string
	passwordStdin bool
	plainHTTP     bool
	noBatch       bool
	fsync         bool
	platform      string
}

func (f *clientFlags) add(cmd *cobra.Command, downloads bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.user, "user", "", "username for the registries (with --password-stdin); default: the Docker/podman credential files")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "read the password from standard input")
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "talk HTTP, not HTTPS, to the registries (loopback and private addresses always use HTTP)")
	fl.StringVar(&f.platform, "platform", "", "os/arch[/variant] to pick from an index (default linux/<this machine's arch>)")
	fl.DurationVar(&f.expiry, "expiry", 15*time.Minute, "lifetime of the download URLs asked of the batch endpoint (60s..168h)")
	if downloads {
		fl.IntVarP(&f.jobs, "jobs", "j", 4, "blobs downloaded at once")
		fl.BoolVar(&f.json, "json", false, "print a machine-readable summary on standard output")
		fl.BoolVarP(&f.verbose, "verbose", "v", false, "log URL resolution, retries and resumes")
		fl.BoolVar(&f.noBatch, "no-batch", false, "never use the batch endpoint (standard API only)")
		fl.BoolVar(&f.fsync, "fsync", false, "flush every blob to disk before it is placed (default: verify on reuse instead)")
	}
}

// client builds a library client; progress is shown on stderr.
func (f *clientFlags) client(cmd *cobra.Command, prog client.Progress) (*client.Client, error) {
	o := client.Options{
		Insecure: f.plainHTTP, Jobs: f.jobs, Expiry: f.expiry, DisableBatch: f.noBatch, Fsync: f.fsync,
		Progress: prog, UserAgent: "wharf/" + version,
	}
	if err := batch.CheckExpiry(f.expiry); err != nil {
		return nil, fmt.Errorf("--%w", err)
	}
	if f.passwordStdin && f.user == "" {
		return nil, errors.New("--password-stdin needs --user")
	}
	if f.user != "" {
		if !f.passwordStdin {
			return nil, errors.New("--user needs --password-stdin (passwords are never taken from the command line)")
		}
		pw, err := prompt.Line(cmd.InOrStdin())
		if err != nil {
			return nil, err
		}
		o.Keychain = client.StaticKeychain(f.user, pw)
	}
	if f.verbose {
		o.Logf = client.LineLogger(cmd.ErrOrStderr(), "wharf: ")
	}
	return client.New(o), nil
}

// run is what pull, export and copy share: a signal-aware context, the
// progress display, the client, and the final report.
func (f *clientFlags) run(cmd *cobra.Command, verb, dest string, do func(context.Context, *client.Client) (*client.Result, error)) error {
	ctx, stop := signalContext()
	defer stop()
	prog := client.NewProgressDisplay(cmd.ErrOrStderr(), f.json)
	c, err := f.client(cmd, prog)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := do(ctx, c)
	prog.Wait()
	if err != nil {
		return err
	}
	sum := client.Summarize(verb, res, c, start)
	if f.json {
		return sum.WriteJSON(cmd.OutOrStdout())
	}
	return sum.WriteText(cmd.OutOrStdout(), dest)
}

func newPullCmd() *cobra.Command {
	var f clientFlags
	var out string
	var all bool
	cmd := &cobra.Command{
		Use:   "pull REF -o DIR",
		Short: "Download an image (or index) into an OCI image layout",
		Long: `Download an image into an OCI image layout directory. The batch endpoint is
used when the registry offers it (one request for every blob URL), the
standard API otherwise. URLs are re-resolved before they could expire and
after storage refuses one; downloads are verified, resumed and retried.`,
		Example: `  wharf pull localhost:5000/demo/app:v1 -o ./app
  wharf pull registry.example.com/base:3 -o ./base --all-platforms --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, "pulled", "to "+out, func(ctx context.Context, c *client.Client) (*client.Result, error) {
				return c.Pull(ctx, args[0], out, client.Selection{Platform: f.platform, AllPlatforms: all})
			})
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVarP(&out, "output", "o", "", "OCI layout directory (created; an existing layout gains the image)")
	_ = cmd.MarkFlagRequired("output")
	cmd.Flags().BoolVar(&all, "all-platforms", false, "pull every image of an index")
	return cmd
}

func newExportCmd() *cobra.Command {
	var f clientFlags
	var out string
	cmd := &cobra.Command{
		Use:     "export REF -o FILE.tar",
		Short:   "Download an image into a tarball that docker load and podman load read",
		Example: `  wharf export localhost:5000/demo/app:v1 -o app.tar && docker load -i app.tar`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, "exported", "to "+out, func(ctx context.Context, c *client.Client) (*client.Result, error) {
				return c.Export(ctx, args[0], out, client.Selection{Platform: f.platform})
			})
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVarP(&out, "output", "o", "", "tarball to write (docker-archive format)")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func newCopyCmd() *cobra.Command {
	var f clientFlags
	var referrers bool
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy an image or index from one registry (or repository) to another",
		Long: `Copy an image or a whole index, registry to registry. Every blob is verified;
blobs the destination has are skipped (HEAD); on one registry, blobs are
mounted across repositories instead of copied. --referrers also copies
signatures, SBOMs and other referrers.`,
		Example: `  wharf copy localhost:5000/demo/app:v1 registry.example.com/mirror/app:v1 --referrers`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd, "copied", "from "+args[0], func(ctx context.Context, c *client.Client) (*client.Result, error) {
				return c.Copy(ctx, args[0], args[1], client.CopyOptions{Platform: f.platform, Referrers: referrers})
			})
		},
	}
	f.add(cmd, true)
	cmd.Flags().Lookup("platform").Usage = "os/arch[/variant]: copy one image of an index (default: the whole index)"
	cmd.Flags().BoolVar(&referrers, "referrers", false, "also copy referrers (signatures, SBOMs), recursively")
	return cmd
}

func newBlobsCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "blobs REF",
		Short:   "Print the batch endpoint's answer for an image: every blob with a signed download URL",
		Example: `  wharf blobs localhost:5000/demo/app:v1 --expiry 10m | jq -r '.blobs[].downloadUrl'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext()
			defer stop()
			c, err := f.client(cmd, nil)
			if err != nil {
				return err
			}
			body, err := c.BlobURLs(ctx, args[0], f.platform)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", body)
			return err
		},
	}
	f.add(cmd, false)
	return cmd
}
