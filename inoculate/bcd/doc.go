// Package bcd reads a Windows Boot Configuration Data store (\Boot\BCD on BIOS systems,
// \EFI\Microsoft\Boot\BCD on UEFI ones) and rewrites the disk identities its device elements
// name, so that Windows restored onto a repartitioned or re-signed disk still finds its boot
// manager, loader, resume and recovery (WinRE ramdisk) entries.
//
// A store is a registry hive (regf 1.3): Objects\{guid}\Description\Type says what an object is,
// Objects\{guid}\Elements\<8 hex digits>\Element holds each element, typed by the element number
// (class in the top nibble, format — device, string, object, object list, integer, boolean,
// integer list — in the next). Device elements are binary descriptors: partitions name a GPT
// partition and disk GUID or an MBR partition's byte offset and disk signature; ramdisk and file
// devices nest a file-path descriptor holding another device. Every descriptor, nested ones
// included, is decoded here, and Rewrite patches the identities in place, same size, through the
// project's regf library, which saves the hive atomically and checks it.
//
// The layouts follow public descriptions (Geoff Chappell's BCD notes; ReactOS' boot library
// headers for the device and local-device type numbers) and the corpus stores; what is not
// described there (the file-path descriptor of type 5 that nests a device and a path) was read off
// WinRE entries of real stores. It is hand-written because no maintained Go library edits BCD
// stores: the Go registry readers there are (e.g. www.velocidex.com/golang/regparser) read hives
// but neither write them nor decode BCD device elements.
package bcd
