// Package tui is Cauldron's recovery wizard: the interactive way to bring a machine back, for a
// technician at the target machine's screen and keyboard or on its serial console.
//
// The wizard walks through eight screens — network, archive, machine and generation, disk
// mapping, options, summary with typed confirmation, progress, result — and builds the same
// restore.Request a kickstart file builds (and, on request, the kickstart that reproduces it).
// It then runs the recovery engine and draws the engine's events: everything the engine does,
// the wizard shows.
//
// Every screen is a small state machine driven by key messages, so tests drive the wizard
// without a terminal; the side effects (opening the repository, reading disks, planning,
// running) are Bubble Tea commands. Run sets up the console the way the boot environment needs
// it (a serial line reporting a 0×0 window, standard output a pipe, TERM=linux or vt100): plain
// ASCII without colour there, colour and Unicode elsewhere.
package tui
