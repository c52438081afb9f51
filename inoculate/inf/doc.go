// Package inf reads Windows driver INF files (and virtio-win's .inx templates) and turns them into
// what an offline driver injection needs: which driver in which folder fits a storage controller's
// PCI IDs on a given Windows version and architecture, and, for the chosen device, the plain data
// of its installation — files to copy from where to where, the service with its start type, load
// order group and image path, and the registry values its AddReg sections write, each decoded with
// its registry type. Nothing here touches a hive: package inoculate turns the plan into hive edits.
//
// The reading follows Microsoft's published INF syntax (Learn: "General syntax rules for INF
// files", the Version, Manufacturer, Models, DDInstall, DDInstall.Services, AddService, AddReg,
// CopyFiles, DestinationDirs, SourceDisksNames and SourceDisksFiles directive pages, "Combining
// platform extensions with operating system versions", "How Windows ranks drivers"): ANSI
// (Windows-1252) or UTF-16LE/UTF-8 text with a byte-order mark, case-insensitive section names
// whose duplicates merge, comments and quotes, line continuation, %strkey% substitution from
// [Strings.LCID] and [Strings], TargetOSVersion decorations and platform extensions.
//
// It is hand-written because no maintained Go library parses INF files: the Go INF packages that
// exist (e.g. github.com/go-ini/ini and its kin) read the unrelated .ini format and know none of
// the INF rules above. No code was taken from ReactOS' inflib, Wine's setupapi or virt-v2v.
package inf
