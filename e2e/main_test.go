package e2e

import (
	"os"
	"testing"

	"github.com/wharf-registry/wharf/internal/pgtest"
)

// TestMain stops the shared PostgreSQL cluster (TestProxyScaleOut's) at
// the end.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
