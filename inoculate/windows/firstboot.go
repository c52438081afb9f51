package windows

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/inf"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// FirstBoot is the driver install queued for Windows' first boot.
//
// The offline registry edits make the boot controller's driver load and bind; Windows' own
// installer then still has to install the package properly (signature check, device instance,
// the INF's hardware-key settings, setupapi log). That is done at first boot by
// Windows\Cauldron\firstboot.cmd, run through SYSTEM\Setup\CmdLine with SetupType=2: Windows'
// setup hook, which winlogon runs as SYSTEM before the logon screen and waits for, on a normal
// boot. The script resets SetupType and CmdLine itself when done. When SYSTEM\Setup already holds
// a pending setup command (a sysprepped image), that hook is left alone and only the fallback is
// used: a RunOnce entry in SOFTWARE, which runs at the first administrator logon.
//
// It cannot loop: it never reboots (pnputil runs without /reboot); each driver is installed in
// its own step (one failing does not stop the others) and counts its attempts in a file written
// before pnputil starts, so a driver whose install crashes the machine is given up after
// RetryLimit boots; the run as a whole is counted the same way; and a done marker makes any later
// run a no-op.
type FirstBoot struct {
	Script     string   `json:"script"` // inside the volume
	Mechanism  []string `json:"mechanism"`
	Drivers    []string `json:"drivers"` // package folders, in install order
	RetryLimit int      `json:"retryLimit"`
}

// runOnceName is the RunOnce value name of the fallback entry.
const runOnceName = "CauldronDrivers"

// firstBootScript writes the script: CRLF lines, plain ASCII, cmd.exe syntax.
func firstBootScript(s *System, pkgs []*pkg, limit int) []byte {
	// The run's markers are named after the packages it installs, so that a later inoculation
	// with other drivers is not mistaken for a run that already happened.
	h := sha256.New()
	for _, p := range pkgs {
		h.Write([]byte(p.name + "\n"))
	}
	tag := hex.EncodeToString(h.Sum(nil))[:8]
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\r\n", a...) }
	w("@echo off")
	w("rem Written by cauldron inoculate for %s.", s.Name())
	w("rem Installs the drivers put in place offline, once, with at most %d attempts each; never reboots.", limit)
	w("setlocal EnableExtensions")
	w(`set "CDIR=%%SystemRoot%%\Cauldron"`)
	w(`set "LOG=%%CDIR%%\firstboot.log"`)
	w("set MAXTRIES=%d", limit)
	w(`set "DONE=%%CDIR%%\firstboot-%s.done"`, tag)
	w(`set "RUNSFILE=%%CDIR%%\firstboot-%s.runs"`, tag)
	w(`if exist "%%DONE%%" goto finish`)
	w("set RUNS=0")
	w(`if exist "%%RUNSFILE%%" set /p RUNS=<"%%RUNSFILE%%"`)
	w("set /a RUNS=RUNS+1")
	w(`>"%%RUNSFILE%%" echo %%RUNS%%`)
	w(`if %%RUNS%% GTR %%MAXTRIES%% (`)
	w(`  >>"%%LOG%%" echo %%DATE%% %%TIME%% run %%RUNS%%: more than %%MAXTRIES%% runs, giving up`)
	w("  goto finish")
	w(")")
	w(`>>"%%LOG%%" echo %%DATE%% %%TIME%% run %%RUNS%%`)
	for _, p := range pkgs {
		w(`call :driver "%s" "%s"`, p.name, p.infName)
	}
	w(`>"%%DONE%%" echo done`)
	w(":finish")
	w(`reg add "HKLM\SYSTEM\Setup" /v SetupType /t REG_DWORD /d 0 /f >nul 2>&1`)
	w(`reg add "HKLM\SYSTEM\Setup" /v CmdLine /t REG_SZ /d "" /f >nul 2>&1`)
	w(`reg delete "HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce" /v %s /f >nul 2>&1`, runOnceName)
	w("exit /b 0")
	w("")
	w(":driver")
	w(`set "PKG=%%CDIR%%\Drivers\%%~1"`)
	w(`if exist "%%PKG%%\cauldron.installed" exit /b 0`)
	w("set TRIES=0")
	w(`if exist "%%PKG%%\cauldron.tries" set /p TRIES=<"%%PKG%%\cauldron.tries"`)
	w("set /a TRIES=TRIES+1")
	w(`>"%%PKG%%\cauldron.tries" echo %%TRIES%%`)
	w(`if %%TRIES%% GTR %%MAXTRIES%% (`)
	w(`  >>"%%LOG%%" echo %%DATE%% %%TIME%% %%~1: attempt %%TRIES%% skipped, %%MAXTRIES%% tried already`)
	w("  exit /b 0")
	w(")")
	if s.Version.Less(v100_14393) {
		// pnputil before Windows 10 1607 knows only the old syntax: -i -a installs and adds.
		w(`pnputil -i -a "%%PKG%%\%%~2" >>"%%LOG%%" 2>&1`)
	} else {
		w(`pnputil /add-driver "%%PKG%%\%%~2" /install >>"%%LOG%%" 2>&1`)
	}
	w("set RC=%%ERRORLEVEL%%")
	w(`>>"%%LOG%%" echo %%DATE%% %%TIME%% %%~1: pnputil exit status %%RC%% (attempt %%TRIES%%)`)
	w(`if "%%RC%%"=="0" (>"%%PKG%%\cauldron.installed" echo ok)`)
	w(`if "%%RC%%"=="3010" (>"%%PKG%%\cauldron.installed" echo ok, Windows wants a reboot to finish)`)
	w("exit /b 0")
	return []byte(b.String())
}

// v100_14393 is Windows 10 1607, whose pnputil first has /add-driver.
var v100_14393 = inf.WinVersion{Major: 10, Minor: 0, Build: 14393}

// queueFirstBoot writes the registry side of the first-boot install.
func queueFirstBoot(s *System, hv hives, pkgs []*pkg, limit int) (*FirstBoot, fileWrite, error) {
	fb := &FirstBoot{Script: `Windows\Cauldron\firstboot.cmd`, RetryLimit: limit}
	for _, p := range pkgs {
		fb.Drivers = append(fb.Drivers, p.name)
	}
	cmd := `cmd.exe /c "%SystemRoot%\Cauldron\firstboot.cmd"`
	st, _ := dword(hv.system, "Setup", "SetupType")
	old, _ := str(hv.system, "Setup", "CmdLine")
	if st == 0 || strings.Contains(old, `Cauldron\firstboot.cmd`) {
		why := "runs the first-boot driver install as SYSTEM before the logon screen (Windows' setup hook; the script resets it)"
		if err := hv.system.setString("Setup", "CmdLine", regf.RegSz, cmd, why); err != nil {
			return nil, fileWrite{}, err
		}
		if err := hv.system.setDword("Setup", "SetupType", 2, why+": 2 = run CmdLine, no reboot"); err != nil {
			return nil, fileWrite{}, err
		}
		fb.Mechanism = append(fb.Mechanism, `SYSTEM\Setup\CmdLine with SetupType=2 (at boot, as SYSTEM, before logon)`)
	} else {
		s.Warnings = append(s.Warnings, fmt.Sprintf("SYSTEM\\Setup holds a pending setup command (SetupType=%d, CmdLine %q): left alone; the first-boot driver install runs at the first administrator logon instead", st, old))
	}
	const ro = `Microsoft\Windows\CurrentVersion\RunOnce`
	if err := hv.software.setString(ro, runOnceName, regf.RegSz, cmd, "fallback: runs the first-boot driver install at the first administrator logon if the boot-time run did not finish"); err != nil {
		return nil, fileWrite{}, err
	}
	fb.Mechanism = append(fb.Mechanism, `SOFTWARE\`+ro+`\`+runOnceName+" (fallback, at first logon)")
	return fb, fileWrite{rel: fb.Script, data: firstBootScript(s, pkgs, limit), why: "the first-boot driver install"}, nil
}
