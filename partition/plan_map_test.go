package partition

import (
	"strings"
	"testing"
)

func TestMapDisks(t *testing.T) {
	d := func(size int64, serial, wwn string) *Disk {
		return &Disk{Table: TableGPT, Size: size, LogicalSectorSize: 512, Serial: serial, WWN: wwn}
	}
	src := []SourceDisk{{"disk0", d(100*GiB, "S0", "naa.0")}, {"disk1", d(200*GiB, "S1", "")}}
	for _, c := range []struct {
		name     string
		targets  []TargetCandidate
		explicit map[string]string
		want     map[string]string
		err      string
	}{
		// Kernel names are deliberately misleading: /dev/sda holds the source's disk1.
		{name: "by WWN and serial, not by name", targets: []TargetCandidate{{"/dev/sda", d(200*GiB, "S1", "")}, {"/dev/sdb", d(100*GiB, "X", "naa.0")}},
			want: map[string]string{"disk0": "/dev/sdb", "disk1": "/dev/sda"}},
		{name: "by equal size", targets: []TargetCandidate{{"/dev/sda", d(200*GiB, "", "")}, {"/dev/sdb", d(100*GiB, "", "")}},
			want: map[string]string{"disk0": "/dev/sdb", "disk1": "/dev/sda"}},
		{name: "serial wins over size", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}, {"/dev/sdb", d(300*GiB, "S0", "")}, {"/dev/sdc", d(200*GiB, "", "")}},
			want: map[string]string{"disk0": "/dev/sdb", "disk1": "/dev/sdc"}},
		{name: "one bigger disk left", targets: []TargetCandidate{{"/dev/nvme0n1", d(500*GiB, "", "")}, {"/dev/sdb", d(100*GiB, "", "")}},
			want: map[string]string{"disk0": "/dev/sdb", "disk1": "/dev/nvme0n1"}},
		{name: "explicit", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}, {"/dev/sdb", d(100*GiB, "", "")}, {"/dev/sdc", d(200*GiB, "", "")}},
			explicit: map[string]string{"disk0": "/dev/sdb"}, want: map[string]string{"disk0": "/dev/sdb", "disk1": "/dev/sdc"}},
		{name: "equal sizes are ambiguous", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}, {"/dev/sdb", d(100*GiB, "", "")}, {"/dev/sdc", d(200*GiB, "", "")}},
			err: "disk0 matches 2 target disks by equal size: /dev/sda (107374182400 bytes), /dev/sdb (107374182400 bytes)"},
		{name: "two bigger disks are ambiguous", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}, {"/dev/sdb", d(300*GiB, "", "")}, {"/dev/sdc", d(400*GiB, "", "")}},
			err: "disk1 matches 2 target disks by size (bigger than the source): /dev/sdb"},
		{name: "duplicate serial is ambiguous", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "S0", "")}, {"/dev/sdb", d(100*GiB, "S0", "")}},
			err: "disk0 matches 2 target disks by serial number"},
		{name: "no target", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}, {"/dev/sdb", d(50*GiB, "", "")}},
			err: "no target disk for disk1 (214748364800 bytes) among the free ones: /dev/sdb (53687091200 bytes)"},
		{name: "explicit unknown disk", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}}, explicit: map[string]string{"disk7": "/dev/sda"}, err: "no disk \"disk7\""},
		{name: "explicit unknown target", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}}, explicit: map[string]string{"disk0": "/dev/sdz"}, err: "/dev/sdz (for disk0) is not among"},
		{name: "explicit twice", targets: []TargetCandidate{{"/dev/sda", d(100*GiB, "", "")}}, explicit: map[string]string{"disk0": "/dev/sda", "disk1": "/dev/sda"}, err: "chosen for both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := MapDisks(src, c.targets, c.explicit)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}
