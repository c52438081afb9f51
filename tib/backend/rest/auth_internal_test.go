package rest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestUnknownUserCostsAsMuch: an unknown user's password is compared with a hash of the file's
// own (highest) cost, so that a wrong password for a known user and any password for an unknown
// one take the same time. The dummy hash was cost 10 while `htpasswd -B` makes cost 5: unknown
// users took 60–180 ms, known ones 3–6 ms, which told which names exist.
func TestUnknownUserCostsAsMuch(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 5, 7} {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), ".htpasswd")
		os.WriteFile(path, []byte("alice:"+string(h)+"\n"), 0o600)
		u, err := ReadHtpasswd(path)
		if err != nil {
			t.Fatal(err)
		}
		if u.Check("mallory", "pw") {
			t.Fatal("an unknown user was admitted")
		}
		if got, _ := bcrypt.Cost(u.dummy()); got != cost {
			t.Errorf("with cost-%d hashes the unknown-user check costs %d", cost, got)
		}
	}
}
