package proc

import (
	"os/exec"
	"testing"
	"time"
)

func start(t *testing.T, script string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	time.Sleep(100 * time.Millisecond) // let the shell set its trap
	return cmd, done
}

// TestStop: a process that obeys SIGTERM ends by it; one that ignores it
// is killed after the grace period.
func TestStop(t *testing.T) {
	cmd, done := start(t, "exec sleep 30")
	Stop(cmd.Process, done, 10*time.Second)
	if ws := cmd.ProcessState.String(); ws != "signal: terminated" {
		t.Errorf("obedient process: %s, want terminated", ws)
	}
	cmd, done = start(t, "trap '' TERM; exec sleep 30")
	begin := time.Now()
	Stop(cmd.Process, done, 200*time.Millisecond)
	if ws := cmd.ProcessState.String(); ws != "signal: killed" || time.Since(begin) > 10*time.Second {
		t.Errorf("stubborn process: %s after %s, want killed", ws, time.Since(begin))
	}
}
