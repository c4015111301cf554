package app

import (
	"log/slog"
	"reflect"

	"github.com/wharf-registry/wharf/auth"
	"github.com/wharf-registry/wharf/auth/service"
	"github.com/wharf-registry/wharf/config"
)

// reloadPolicy applies next to a running registry: auth.policy takes
// effect at once (svc nil: auth.mode none, no policy); users need no
// reload (the htpasswd file is re-read when it changes); every other
// setting needs a restart, and a reload that changes one says so. An
// invalid policy changes nothing. It returns the configuration now in
// force.
func reloadPolicy(log *slog.Logger, running, next config.Config, svc *service.Service) config.Config {
	if svc == nil {
		log.Warn("reload: auth.mode none has no policy to reload")
	} else if p, err := auth.CompilePolicy(next.Auth.Policy); err != nil {
		log.Error("reload: auth.policy refused; nothing changed", "err", err)
		return running
	} else {
		svc.SetPolicy(p)
		log.Info("reload: auth.policy applied", "rules", len(next.Auth.Policy.Rules))
		running.Auth.Policy = next.Auth.Policy
	}
	if !reflect.DeepEqual(running, next) {
		log.Warn("reload: settings other than auth.policy changed; they take effect on restart")
	}
	return running
}
