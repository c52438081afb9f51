package tui

import "strings"

// helpText is the `?` page of the current screen: what it is for and its keys.
func (m *Model) helpText() string {
	common := `
Keys on every screen:
  up/down (or k/j)   move            enter   choose / continue
  left/right (h/l)   change a choice esc     back to the previous screen
  tab / shift+tab    next / previous ? or F1 this help (F1 while typing)
  ctrl+c             leave the wizard (asks first)
While a text field has the cursor, letters are typed into it.`
	var s string
	switch m.screen {
	case scrNetwork:
		s = `NETWORK
The archive may be reached over the network. Here each interface shows its link and
addresses. In the boot environment:
  d   ask for an address by DHCP on the highlighted interface
  s   give it a static address (address/prefix, gateway, name servers)
  r   list the interfaces again (after plugging a cable)
On an ordinary host the host manages the network and nothing can be changed here.
An archive on local disks or USB sticks needs no network: press enter.`
	case scrArchive:
		s = `ARCHIVE
Choose the repository: one found on attached media, type its directory (a disk or USB
stick mounted by the boot environment), or type a network location:
  http(s)://SERVER:PORT/PATH     a server running cauldron serve
  s3://BUCKET/PREFIX             then the endpoint (empty: Amazon S3) and the access keys
  nfs://SERVER/EXPORT/PATH       mounted here (NFS 4.2 down to 3)
  smb://SERVER/SHARE/PATH        mounted here, as the user asked for next (empty: a guest)
Set up the network first (Back) when the archive is on another machine.
An encrypted archive asks for its password; a wrong one can be typed again.
  r   look for archives on attached media again`
	case scrMachine:
		s = `MACHINE
The machines captured in this archive, with the time and size of their latest
generation. Enter shows the machine's timeline.`
	case scrGeneration:
		s = `GENERATION
Every generation of the machine, newest first: full or incremental, its size and how
much it added. Any generation can be chosen, also one inside an incremental chain.
Below the list: the highlighted generation's disks and volumes.
  pgup/pgdn (b/f, left/right)  page     home/end (g/G)  newest / oldest`
	case scrDisks:
		s = `DISK MAPPING
Each disk of the generation and the disk it will be written to, as proposed by the
engine (WWN, then serial number, then size). Check model, serial and size before going on.
  left/right  choose another target for the highlighted source disk
  r           resize policy when the sizes differ: proportional, grow-last or keep
  i           identities: keep (recovery in place) or renew (a copy beside the original)
  s           read the disks again (after plugging one in)
Disks marked x cannot be chosen: the boot medium, the archive's disk, disks in use.`
	case scrOptions:
		s = `OPTIONS
Inoculation makes the restored system boot on this hardware: the controller to prepare
for, driver folders from attached media, Windows inbox drivers to enable and other
hypervisors' services to disable. Replication: whether the machine's capture is frozen
during the recovery, and removed (failover) or resumed (a copy) at the end.
After a success the wizard can reboot or power off by itself after 10 seconds.
  space, left/right   change the highlighted option`
	case scrSummary:
		s = `SUMMARY AND CONFIRMATION
The plan exactly as the engine will carry it out; nothing has been written yet.
Check every disk that will be overwritten. To start, type ` + ConfirmWord + ` in capital letters
and press enter: there is no default and no single key.
  tab        move to [ Export kickstart ]: write a kickstart file that repeats this
             recovery unattended on the next machine
  up/down    scroll the plan`
	case scrProgress:
		s = `PROGRESS
The engine's stages, each disk's progress (bytes, rate, time left) and the log.
  esc or c   cancel (asks first). The journal keeps what was done: running the same
             recovery again resumes it.`
	case scrResult:
		s = `RESULT
Whether the recovery succeeded, the report and the log. The report is already saved in
the archive; it can also be saved to a folder such as a USB stick.
Then choose what happens next.`
	}
	return strings.TrimLeft(s, "\n") + "\n" + common
}
