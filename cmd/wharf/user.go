package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/wharf-registry/wharf/app"
	"github.com/wharf-registry/wharf/auth/htpasswd"
	"github.com/wharf-registry/wharf/internal/prompt"
)

func newUserCmd() *cobra.Command {
	var (
		file string
		cf   configFlags
	)
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the users of the htpasswd file (bcrypt)",
		Long: `Manage the users file (htpasswd, bcrypt hashes only). The file is
--htpasswd, else auth.htpasswd of the configuration (--config, WHARF_*),
else <data_dir>/htpasswd. A running registry picks up changes within seconds.`,
	}
	cmd.PersistentFlags().StringVar(&file, "htpasswd", "", "users file (default: auth.htpasswd, else <data_dir>/htpasswd)")
	cf.add(cmd, "")
	// users runs fn on the users file; what fn returns is printed.
	users := func(fn func(cmd *cobra.Command, f *htpasswd.File, path string) (string, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			p := file
			if p == "" {
				cfg, err := cf.load(cmd)
				if err != nil {
					return err
				}
				p = app.HtpasswdPath(cfg)
			}
			f, err := htpasswd.Load(p)
			if err != nil {
				return err
			}
			msg, err := fn(cmd, f, p)
			if err == nil && msg != "" {
				fmt.Fprintln(cmd.OutOrStdout(), msg)
			}
			return err
		}
	}

	var cost int
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user or change its password",
		Long: `Add a user or change its password. The password is read from standard
input (first line) when it is not a terminal, otherwise prompted for twice.`,
		Args: cobra.ExactArgs(1),
	}
	add.RunE = users(func(cmd *cobra.Command, f *htpasswd.File, p string) (string, error) {
		name := cmd.Flags().Arg(0)
		pass, err := prompt.Password(cmd.InOrStdin(), cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		verb := "added"
		if f.Has(name) {
			verb = "changed the password of"
		}
		if err := f.Set(name, pass, cost); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s user %s in %s", verb, name, p), f.Save(p)
	})
	add.Flags().IntVar(&cost, "cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost (%d-%d)", bcrypt.MinCost, bcrypt.MaxCost))

	remove := &cobra.Command{Use: "remove NAME", Short: "Remove a user", Args: cobra.ExactArgs(1)}
	remove.RunE = users(func(cmd *cobra.Command, f *htpasswd.File, p string) (string, error) {
		name := cmd.Flags().Arg(0)
		if !f.Remove(name) {
			return "", fmt.Errorf("no user %q in %s", name, p)
		}
		return fmt.Sprintf("removed user %s from %s", name, p), f.Save(p)
	})
	list := &cobra.Command{Use: "list", Short: "List the users", Args: cobra.NoArgs}
	list.RunE = users(func(_ *cobra.Command, f *htpasswd.File, _ string) (string, error) {
		return strings.Join(f.Users(), "\n"), nil
	})
	cmd.AddCommand(add, remove, list)
	return cmd
}
