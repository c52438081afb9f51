// Package mountinfo holds what several packages need to read the kernel's mount tables
// (/proc/mounts, /proc/self/mountinfo) and fstab, which share one escaping rule.
package mountinfo

import "strings"

// Unescape undoes the octal escapes the kernel and fstab use for space, tab, newline and
// backslash in paths (\040 for a space). A backslash not followed by three octal digits stays.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// octal3 reads three octal digits as a byte (\377 at most).
func octal3(d string) (byte, bool) {
	v := 0
	for i := 0; i < 3; i++ {
		if d[i] < '0' || d[i] > '7' {
			return 0, false
		}
		v = v*8 + int(d[i]-'0')
	}
	if v > 0xff {
		return 0, false
	}
	return byte(v), true
}
