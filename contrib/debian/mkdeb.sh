#!/usr/bin/env bash
# Builds the Debian package from a staging root that `make install` filled; `make deb`
# runs it as
#     bash contrib/debian/mkdeb.sh WORK VERSION ARCH OUT.deb
# with the files under WORK/debian/pooler (debhelper's layout, which dpkg-shlibdeps
# expects). What debhelper would do, by hand: strip the binary, gzip -9n the man pages
# and the larger docs, add copyright and changelog.Debian.gz, write DEBIAN/control
# (Depends from dpkg-shlibdeps when it is there), conffiles, md5sums and the maintainer
# scripts, then dpkg-deb --root-owner-group (no fakeroot needed).
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 WORK VERSION ARCH OUT.deb" >&2
    exit 2
fi
work=$1 version=$2 arch=$3 out=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$work/debian/pooler
doc=$root/usr/share/doc/pooler

# When dpkg-shlibdeps is missing: what it computes for the amd64 build on Debian 12.
fallback_depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"

[ -x "$root/usr/bin/pooler" ] || {
    echo "mkdeb: $root/usr/bin/pooler missing: run make deb" >&2
    exit 1
}

# The changelog's newest entry names the version being built.
changelog_version=$(sed -n '1s/^pooler (\([^)]*\)).*/\1/p' "$here/changelog")
if [ "$changelog_version" != "$version" ]; then
    echo "mkdeb: contrib/debian/changelog's top entry is '$changelog_version', the package is $version:" >&2
    echo "       add an entry for $version (or set DEB_REVISION)" >&2
    exit 1
fi

strip --remove-section=.comment --remove-section=.note --strip-unneeded "$root/usr/bin/pooler"
gzip -9n "$root/usr/share/man/man1/pooler.1" "$root/usr/share/man/man5/pooler.conf.5"
# Debian policy 12.3: docs over 4 kB are compressed.
gzip -9n "$doc/README.md" "$doc/pooler.conf.sample"
install -m 644 "$here/copyright" "$doc/copyright"
gzip -9nc "$here/changelog" >"$doc/changelog.Debian.gz"
chmod 644 "$doc/changelog.Debian.gz"
# The conffile ships 0644 root:root; postinst gives it root:pooler 0640 with
# dpkg-statoverride, which dpkg then keeps across upgrades.
chmod 644 "$root/etc/pooler/pooler.conf"

mkdir -p "$root/DEBIAN"
chmod 755 "$root/DEBIAN"
depends=""
if command -v dpkg-shlibdeps >/dev/null; then
    # dpkg-shlibdeps reads debian/control and wants the binary in a package tree (one
    # with a DEBIAN directory).
    printf 'Source: pooler\n\nPackage: pooler\nArchitecture: any\n' >"$work/debian/control"
    depends=$(cd "$work" && dpkg-shlibdeps -O debian/pooler/usr/bin/pooler |
        sed -n 's/^shlibs:Depends=//p')
    rm -f "$work/debian/control"
fi
if [ -z "$depends" ]; then
    echo "mkdeb: dpkg-shlibdeps not available: Depends: $fallback_depends" >&2
    depends=$fallback_depends
fi

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@INSTALLED_SIZE@|$installed_size|" \
    -e "s|@DEPENDS@|$depends|" "$here/control" >"$root/DEBIAN/control"
if grep -n '@[A-Z_]*@' "$root/DEBIAN/control"; then
    echo "mkdeb: a placeholder is left in DEBIAN/control" >&2
    exit 1
fi
install -m 644 "$here/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 755 "$here/$script" "$root/DEBIAN/$script"
done
# Every file but the conffiles (dpkg tracks those itself), as dh_md5sums does.
(
    cd "$root"
    find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' |
        LC_ALL=C sort -z | xargs -0 md5sum
) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out"
echo "built $out"
