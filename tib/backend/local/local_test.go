package local_test

import (
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/backendtest"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return local.New(filepath.Join(t.TempDir(), "repo"))
	})
}
