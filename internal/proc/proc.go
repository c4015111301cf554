// Package proc stops the server processes tests and the load tool start.
package proc

import (
	"os"
	"syscall"
	"time"
)

// Stop asks p to shut down (SIGTERM) and waits for done (closed when its
// Wait returned); a process still running after grace is killed, so a
// stop always ends.
func Stop(p *os.Process, done <-chan struct{}, grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}
