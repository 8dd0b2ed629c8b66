#!/bin/sh
# check_install.sh - a program outside the tree builds against tapegrad two
# ways: the installed library through pkg-config, and meson's
# dependency('tapegrad') with tapegrad as a subproject.
set -eu
src=${TG_SOURCE_ROOT:?} build=${TG_BUILD_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/prog.c" <<'C'
#include <stdio.h>
#include <tapegrad.h>
int main(void)
{
	tg_ctx *ctx = tg_ctx_new(1);
	tg_tensor *a = tg_param(tg_scalar(ctx, TG_F64, 100));
	tg_tensor *p = tg_mul(tg_mul(a, tg_scalar(ctx, TG_F64, 2)), tg_scalar(ctx, TG_F64, 1.1));
	tg_backward(p);
	printf("%g %g\n", tg_item(p), tg_item(tg_grad(a)));
	int failed = !tg_ok(ctx);
	tg_ctx_free(ctx);
	return failed;
}
C

# 1. installed, through pkg-config
meson install -C "$build" --no-rebuild --destdir "$tmp/root" >/dev/null
pc=$(find "$tmp/root" -name tapegrad.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: meson install wrote no tapegrad.pc"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
libs=$(pkg-config --libs tapegrad)
case "$libs" in
*-Wl,-rpath,*) ;;
*) echo "FAIL: tapegrad.pc's Libs carry no rpath: $libs"; exit 1 ;;
esac
cc -o "$tmp/prog" "$tmp/prog.c" $(pkg-config --cflags tapegrad) $libs
libdir=$(dirname "$(dirname "$pc")")
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/prog")
[ "$out" = "220 2.2" ] || { echo "FAIL: installed build printed '$out', expected '220 2.2'"; exit 1; }
echo "pkg-config build: $out"

# 1a. each installed header compiles alone, first in a file of its own,
# as strict C11 and, where a C++ compiler is, as C++17 (extern "C", no
# C-only constructs)
incdir=$(dirname "$(find "$tmp/root" -name tapegrad.h | head -n 1)")
nh=0
for h in "$incdir"/tapegrad*.h; do
	[ -e "$h" ] || { echo "FAIL: meson install wrote no header tapegrad*.h"; exit 1; }
	printf '#include <%s>\nint tg_header_probe;\n' "$(basename "$h")" >"$tmp/h.c"
	cc -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$incdir" -c "$tmp/h.c" -o "$tmp/h.o" ||
		{ echo "FAIL: $(basename "$h") does not compile alone as C11"; exit 1; }
	if command -v c++ >/dev/null; then
		cp "$tmp/h.c" "$tmp/h.cc"
		c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$incdir" -c "$tmp/h.cc" -o "$tmp/h.o" ||
			{ echo "FAIL: $(basename "$h") does not compile alone as C++17"; exit 1; }
	fi
	nh=$((nh + 1))
done
echo "$nh installed headers compile alone"
if command -v c++ >/dev/null; then # a C++ program links: the prototypes are extern "C"
	cp "$tmp/prog.c" "$tmp/prog.cc"
	c++ -std=c++17 -o "$tmp/prog_cxx" "$tmp/prog.cc" $(pkg-config --cflags tapegrad) $libs ||
		{ echo "FAIL: a C++ program does not build against the installed library"; exit 1; }
	out=$(LD_LIBRARY_PATH="$libdir" "$tmp/prog_cxx")
	[ "$out" = "220 2.2" ] || { echo "FAIL: C++ build printed '$out', expected '220 2.2'"; exit 1; }
	echo "C++ build: $out"
fi

# 1b. the shared library exports the API and nothing else: every symbol it
# defines for others is tg_*, so none can clash with a program's own
so=$(find "$libdir" -name 'libtapegrad.so.*.*' | head -n 1)
[ -n "$so" ] || { echo "FAIL: meson install wrote no libtapegrad.so"; exit 1; }
leaks=$(nm -D --defined-only "$so" | awk 'NF == 3 && $3 !~ /^tg_/ { print $3 }')
[ -z "$leaks" ] || { echo "FAIL: libtapegrad.so exports symbols outside tg_*:" $leaks; exit 1; }
echo "libtapegrad.so exports $(nm -D --defined-only "$so" | grep -c ' tg_') tg_* symbols and nothing else"

# 1c. the installed static library, with what `pkg-config --static` adds:
# Libs.private and Requires.private must name every library libtapegrad.a
# calls into (the BLAS, SLEEF, zlib, MPI, oneDNN as this build has them);
# --whole-archive takes in every object, so each one's calls must resolve
[ -f "$libdir/libtapegrad.a" ] || { echo "FAIL: meson install wrote no libtapegrad.a"; exit 1; }
static_libs=$(pkg-config --static --libs tapegrad | sed 's/-ltapegrad\( \|$\)/-Wl,-Bstatic,--whole-archive -ltapegrad -Wl,--no-whole-archive,-Bdynamic /')
cc -o "$tmp/prog_static" "$tmp/prog.c" $(pkg-config --static --cflags tapegrad) $static_libs ||
	{ echo "FAIL: a program does not link with libtapegrad.a and 'pkg-config --static --libs tapegrad': $static_libs"; exit 1; }
if ldd "$tmp/prog_static" | grep -q libtapegrad; then
	echo "FAIL: the static build links libtapegrad.so"; exit 1
fi
out=$("$tmp/prog_static")
[ "$out" = "220 2.2" ] || { echo "FAIL: static build printed '$out', expected '220 2.2'"; exit 1; }
echo "pkg-config --static build: $out"

# 2. as a meson subproject (with the system's pkg-config again: the sysroot
# of step 1 would move the paths of the MPI the subproject finds)
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
mkdir -p "$tmp/user/subprojects"
ln -s "$src" "$tmp/user/subprojects/tapegrad"
cp "$tmp/prog.c" "$tmp/user/"
cat >"$tmp/user/meson.build" <<'M'
project('user', 'c', default_options : ['c_std=c11'])
subproject('tapegrad', default_options : ['default_library=static', 'werror=false'])
executable('prog', 'prog.c', dependencies : dependency('tapegrad'))
M
meson setup "$tmp/user/build" "$tmp/user" >/dev/null
meson compile -C "$tmp/user/build" >/dev/null
out=$("$tmp/user/build/prog")
[ "$out" = "220 2.2" ] || { echo "FAIL: subproject build printed '$out'"; exit 1; }
echo "subproject build: $out"
