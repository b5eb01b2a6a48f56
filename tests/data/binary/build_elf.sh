#!/bin/bash
# Builds tiny ELF extension modules that fail to load for real, one reason each.
# Usage: build_elf.sh OUTDIR PYTHON_INCLUDE EXT_SUFFIX   (called by tests/test_binary_elf.py)
set -euo pipefail
D=$1; PYINC=$2; EXT=$3
mkdir -p "$D"; cd "$D"
CFLAGS="-shared -fPIC -O0 -I$PYINC"

# module template: PyInit_<name> calls BODY, then creates the module
mkmod() { # name body decls
cat > "$1.c" <<C
#include <Python.h>
$3
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "$1", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_$1(void) { $2 return PyModule_Create(&def); }
C
}

# a library that is deleted after linking
echo 'int helper_a(void){return 42;}' > libhelper_a.c
gcc -shared -fPIC -o libhelper_a.so libhelper_a.c
mkmod missinglib 'if (helper_a() != 42) return NULL;' 'int helper_a(void);'
gcc $CFLAGS missinglib.c -L. -lhelper_a -Wl,-rpath,'$ORIGIN' -o "missinglib$EXT"
mkdir -p aside; mv libhelper_a.so aside/

# a C symbol that the swapped-in library no longer defines
echo 'int helper_b(void){return 1;}' > libhelper_b.c
gcc -shared -fPIC -o libhelper_b.so libhelper_b.c
mkmod undefsym 'if (helper_b() != 1) return NULL;' 'int helper_b(void);'
gcc $CFLAGS undefsym.c -L. -lhelper_b -Wl,-rpath,'$ORIGIN' -o "undefsym$EXT"
echo 'int helper_b_renamed(void){return 1;}' > libhelper_b_v2.c
gcc -shared -fPIC -o libhelper_b.so libhelper_b_v2.c

# a C++ symbol, the same way (c10::check_version(int) -> (long))
echo 'namespace c10 { int check_version(int v){return v;} }' > libfakec10.cpp
g++ -shared -fPIC -o libfakec10.so libfakec10.cpp
cat > cxxsym.cpp <<C
#include <Python.h>
namespace c10 { int check_version(int v); }
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "cxxsym", NULL, -1, NULL};
extern "C" PyMODINIT_FUNC PyInit_cxxsym(void) { if (c10::check_version(2) != 2) return NULL; return PyModule_Create(&def); }
C
g++ $CFLAGS cxxsym.cpp -L. -lfakec10 -Wl,-rpath,'$ORIGIN' -o "cxxsym$EXT"
echo 'namespace c10 { long check_version(long v){return v;} }' > libfakec10_v2.cpp
g++ -shared -fPIC -o libfakec10.so libfakec10_v2.cpp

# C++ with std::string: needs libstdc++ symbol versions that the system has
cat > cxxgood.cpp <<C
#include <Python.h>
#include <string>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "cxxgood", NULL, -1, NULL};
extern "C" PyMODINIT_FUNC PyInit_cxxgood(void) { std::string s("x"); if (s.size() != 1) return NULL; return PyModule_Create(&def); }
C
g++ $CFLAGS cxxgood.cpp -o "cxxgood$EXT"

# a symbol version (GLIBCXX_9.9) that the swapped-in library does not define
echo 'int fake_fn(void){return 3;}' > libfakestd.c
printf 'GLIBCXX_9.9 { global: fake_fn; local: *; };\n' > new.map
printf 'GLIBCXX_3.4 { global: fake_fn; local: *; };\n' > old.map
gcc -shared -fPIC -Wl,--version-script=new.map -Wl,-soname,libfakestd.so.6 -o libfakestd.so.6 libfakestd.c
ln -sf libfakestd.so.6 libfakestd.so
mkmod needsver 'if (fake_fn() != 3) return NULL;' 'int fake_fn(void);'
gcc $CFLAGS needsver.c -L. -lfakestd -Wl,-rpath,'$ORIGIN' -o "needsver$EXT"
gcc -shared -fPIC -Wl,--version-script=old.map -Wl,-soname,libfakestd.so.6 -o libfakestd.so.6 libfakestd.c

# a library found only through --search-dir / LD_LIBRARY_PATH (no RPATH)
mkdir -p elsewhere
echo 'int helper_c(void){return 5;}' > libhelper_c.c
gcc -shared -fPIC -o elsewhere/libhelper_c.so libhelper_c.c
mkmod norpath 'if (helper_c() != 5) return NULL;' 'int helper_c(void);'
gcc $CFLAGS norpath.c -Lelsewhere -lhelper_c -o "norpath$EXT"

# init function under another name; a good control
mkmod noinit '' ''
sed -i 's/PyInit_noinit/PyInit_something_else/' noinit.c
gcc $CFLAGS noinit.c -o "noinit$EXT"
mkmod good '' ''
gcc $CFLAGS good.c -o "good$EXT"

# not binaries: a Git LFS pointer, a truncated copy, an empty file, text
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:%064d\nsize 123456\n' 0 > "lfs$EXT"
head -c 3000 "good$EXT" > "truncated$EXT"
: > "empty$EXT"
echo 'not an ELF file' > "text$EXT"
