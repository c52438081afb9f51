// Package restore is the recovery engine: it turns a request (from a kickstart file, the wizard or
// restore-disk) into a plan that is validated before anything is written — every target through
// one safety gate (package restore/target) made from one list of protected paths (SafetyGate
// gives layout apply the same) — and runs the plan as stages that report events, keep a journal
// for resuming after a power loss, and end in a report. Consent is the front ends' part:
// Plan.Overwrites names what needs it.
//
// Stages, in order (each reported as start, progress, done or error events):
//
//	freeze     freeze the machine's replication session (no new generation while recovering)
//	check      check every disk's plan against the generation and the tools (nothing written)
//	restore    per disk, in parallel across disks: wipe and write the layout, restore every
//	           volume (at its new place), resize filesystems as the plan says (restore/write)
//	verify     read back what was restored and compare it with the chunk hashes; read-only
//	           filesystem checks where a volume was resized or its boot sector rewritten
//	inoculate  make the restored system boot on this hardware (package inoculate)
//	finalize   physical targets: the kernel re-reads the tables; (boot entries are inoculation's)
//	release    remove (failover) or resume (copy-and-recover) the replication session
//	report     save the report and the log into the repository (and onto the restored system)
//
// Nothing here knows about kickstart syntax or the wizard: FromKickstart turns a parsed kickstart
// (package restore/kickstart) into a Request, and the wizard builds one directly.
package restore
