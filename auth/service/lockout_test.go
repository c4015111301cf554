package service_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/wharf-registry/wharf/auth/service"
)

// loginAs sends Basic credentials from client (X-Forwarded-For, the
// fixture trusting loopback as its proxy) where mode checks passwords.
func (fx *fixture) loginAs(t *testing.T, client, user, pass string) int {
	t.Helper()
	path := "/v2/"
	if fx.mode == service.ModeToken {
		path = "/token?service=wharf-test"
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fx.reg.URL+path, nil)
	req.SetBasicAuth(user, pass)
	req.Header.Set("X-Forwarded-For", client)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFailedLoginsDoNotLockOutTheUser: an address guessing a user's
// password is limited, the user is not: the right password from another
// address works (it was 429 from every address), a wrong one from there
// makes that address limited for the user too.
func TestFailedLoginsDoNotLockOutTheUser(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode, fixtureOpts{burst: 3, trustLoopback: true})
			const guesser, user, other = "203.0.113.7", "198.51.100.2", "198.51.100.3"
			for i := range 3 {
				if got := fx.loginAs(t, guesser, "writer", fmt.Sprintf("guess-%d", i)); got != 401 {
					t.Fatalf("guess %d: %d", i, got)
				}
			}
			if got := fx.loginAs(t, guesser, "writer", "guess-3"); got != 429 {
				t.Fatalf("the guessing address after its burst: %d, want 429", got)
			}
			if got := fx.loginAs(t, guesser, "writer", users["writer"]); got != 429 {
				t.Errorf("the guessing address with the right password: %d, want 429", got)
			}
			for i := range 3 {
				if got := fx.loginAs(t, user, "writer", users["writer"]); got != 200 {
					t.Fatalf("writer from another address (%d): %d, want 200", i, got)
				}
			}
			// Nor once writer's credentials are cached: a limited address
			// would tell the right guess (200) from wrong ones (429).
			if got := fx.loginAs(t, guesser, "writer", users["writer"]); got != 429 {
				t.Errorf("the guessing address with the right (cached) password: %d, want 429", got)
			}
			// A guess from a fresh address while writer is guessed is
			// checked once, then that address is refused for writer.
			if got := fx.loginAs(t, other, "writer", "guess"); got != 401 {
				t.Errorf("a first guess from a fresh address: %d, want 401", got)
			}
			if got := fx.loginAs(t, other, "writer", users["writer"]); got != 429 {
				t.Errorf("that address again, while writer is guessed: %d, want 429", got)
			}
			if got := fx.loginAs(t, other, "reader", users["reader"]); got != 200 {
				t.Errorf("that address for another user: %d, want 200", got)
			}
			if got := fx.loginAs(t, user, "writer", users["writer"]); got != 200 {
				t.Errorf("writer from its own address at the end: %d, want 200", got)
			}
		})
	}
}

// TestWrongPasswordPullsDoNotLockOut: with the default limits, two pulls
// with a wrong password (containerd retries the 401: ~5 failed logins
// each) leave the address and the user able to log in at once.
func TestWrongPasswordPullsDoNotLockOut(t *testing.T) {
	for _, mode := range []service.Mode{service.ModeBasic, service.ModeToken} {
		t.Run(string(mode), func(t *testing.T) {
			fx := newFixture(t, mode, fixtureOpts{defaultLimits: true, trustLoopback: true})
			const addr = "192.0.2.10"
			for i := range 2 * 5 {
				if got := fx.loginAs(t, addr, "writer", "stale-password"); got != 401 {
					t.Fatalf("failed login %d: %d, want 401", i, got)
				}
			}
			if got := fx.loginAs(t, addr, "writer", users["writer"]); got != 200 {
				t.Errorf("the right password after two failed pulls: %d, want 200", got)
			}
		})
	}
}
