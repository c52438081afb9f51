# Loop-device helpers shared by the bench scripts. The caller defines LOOPS=() and detaches
# whatever is left in it on exit.

# loop_attach VAR LOSETUP-ARGS...: attaches a loop device and stores its name in VAR.
loop_attach() {
	local _var=$1 _dev
	shift
	_dev=$(losetup --find --show "$@")
	LOOPS+=("$_dev")
	printf -v "$_var" %s "$_dev"
}

# loop_detach DEV: detaches DEV and forgets it.
loop_detach() {
	local keep=() l
	losetup -d "$1"
	for l in "${LOOPS[@]}"; do [ "$l" = "$1" ] || keep+=("$l"); done
	LOOPS=(${keep[@]+"${keep[@]}"})
}
