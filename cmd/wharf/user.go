package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/config"
)

func newUserCmd() *cobra.Command {
	var file, configFile, dataDir string
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the users of the htpasswd file (bcrypt)",
		Long: `Manage the users file (htpasswd, bcrypt hashes only). The file is
--htpasswd, else auth.htpasswd of the configuration (--config, WHARF_*),
else <data_dir>/htpasswd. A running registry picks up changes within seconds.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&file, "htpasswd", "", "users file (default: auth.htpasswd, else <data_dir>/htpasswd)")
	pf.StringVarP(&configFile, "config", "c", "", "YAML configuration file")
	pf.StringVar(&dataDir, "data-dir", "", "data directory (WHARF_DATA_DIR)")
	path := func(cmd *cobra.Command) (string, error) {
		if file != "" {
			return file, nil
		}
		cfg, err := config.Load(configFile, os.Environ())
		if err != nil {
			return "", err
		}
		if cmd.Flags().Changed("data-dir") {
			cfg.DataDir = dataDir
		}
		return app.HtpasswdPath(cfg), nil
	}

	var cost int
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user or change its password",
		Long: `Add a user or change its password. The password is read from standard
input (first line) when it is not a terminal, otherwise prompted for twice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := path(cmd)
			if err != nil {
				return err
			}
			f, err := htpasswd.Load(p)
			if err != nil {
				return err
			}
			pass, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			existed := f.Has(args[0])
			if err := f.Set(args[0], pass, cost); err != nil {
				return err
			}
			if err := f.Save(p); err != nil {
				return err
			}
			verb := "added"
			if existed {
				verb = "changed the password of"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s user %s in %s\n", verb, args[0], p)
			return nil
		},
	}
	add.Flags().IntVar(&cost, "cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost (%d-%d)", bcrypt.MinCost, bcrypt.MaxCost))

	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := path(cmd)
			if err != nil {
				return err
			}
			f, err := htpasswd.Load(p)
			if err != nil {
				return err
			}
			if !f.Remove(args[0]) {
				return fmt.Errorf("no user %q in %s", args[0], p)
			}
			if err := f.Save(p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed user %s from %s\n", args[0], p)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := path(cmd)
			if err != nil {
				return err
			}
			f, err := htpasswd.Load(p)
			if err != nil {
				return err
			}
			for _, u := range f.Users() {
				fmt.Fprintln(cmd.OutOrStdout(), u)
			}
			return nil
		},
	}
	cmd.AddCommand(add, remove, list)
	return cmd
}

// readPassword prompts twice on a terminal, otherwise reads one line.
func readPassword(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		fmt.Fprint(prompt, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		if len(a) == 0 {
			return "", errors.New("empty password")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password on standard input")
	}
	return line, nil
}
