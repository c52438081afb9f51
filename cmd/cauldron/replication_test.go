package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplicationCommands(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=pw", "CAULDRON_REPOSITORY=" + repo}
	disk := makeDisk(t, dir, 8, 1)
	ok(t, env, "init")
	if out := ok(t, env, "replication", "status"); !strings.Contains(out, "no replication sessions") {
		t.Fatalf("empty status: %q", out)
	}
	ok(t, env, "capture", "--machine", "web01", disk)
	if out := ok(t, env, "replication", "status", "web01"); !strings.Contains(out, "web01: active, last capture") {
		t.Fatalf("status after capture: %q", out)
	}
	ok(t, env, "replication", "freeze", "web01")
	_, errs, code := cauldron(t, env, "capture", "--machine", "web01", disk)
	if code == 0 || !strings.Contains(errs, "frozen by cauldron replication freeze") {
		t.Fatalf("capture while frozen: exit %d: %s", code, errs)
	}
	if _, errs, code := cauldron(t, env, "replication", "release", "web01"); code == 0 || !strings.Contains(errs, "--resume") {
		t.Fatalf("release without a mode: exit %d: %s", code, errs)
	}
	ok(t, env, "replication", "release", "web01", "--resume")
	ok(t, env, "capture", "--machine", "web01", disk)
	var list []struct{ Machine, State string }
	if err := json.Unmarshal([]byte(ok(t, env, "replication", "status", "--json")), &list); err != nil || len(list) != 1 || list[0].State != "active" {
		t.Fatalf("json status: %+v %v", list, err)
	}
	ok(t, env, "replication", "release", "web01", "--remove")
	if _, errs, code := cauldron(t, env, "replication", "status", "web01"); code == 0 || !strings.Contains(errs, "has no replication session") {
		t.Fatalf("status after remove: exit %d: %s", code, errs)
	}
}
