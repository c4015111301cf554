package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"syscall"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/config"
)

// reloadOnHangup reloads the configuration on each SIGHUP until ctx is
// done. auth.policy takes effect at once (svc nil: auth.mode none, no
// policy); users need no signal (the htpasswd file is re-read when it
// changes); every other setting needs a restart, and a reload that
// changes one says so. An invalid file changes nothing.
func reloadOnHangup(ctx context.Context, log *slog.Logger, running config.Config, svc *service.Service, reload func() (config.Config, error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		next, err := reload()
		if err != nil {
			log.Error("reload: configuration refused; nothing changed", "err", err)
			continue
		}
		if svc == nil {
			log.Warn("reload: auth.mode none has no policy to reload")
		} else if p, err := auth.CompilePolicy(next.Auth.Policy); err != nil {
			log.Error("reload: auth.policy refused; nothing changed", "err", err)
			continue
		} else {
			svc.SetPolicy(p)
			log.Info("reload: auth.policy applied", "rules", len(next.Auth.Policy.Rules))
			running.Auth.Policy = next.Auth.Policy
		}
		if !reflect.DeepEqual(running, next) {
			log.Warn("reload: settings other than auth.policy changed; they take effect on restart")
		}
	}
}
