#!/usr/bin/env bash
# Builds the ChatMesh image FROM scratch, offline: the release binary plus exactly the shared libraries it
# needs (found with ldd on this machine, so it works on any glibc system), glibc's name-resolution modules
# (for `--peer HOST:PORT` with compose service names) and a few /etc files. With --prometheus, the same for
# the Prometheus server of the compose profile "monitoring", from the Debian package's binary.
#
#   deploy/build-image.sh [-t TAG] [-b BINARY] [--cargo] [--no-strip] [--keep-context] [--prometheus]
#
#   -t, --tag TAG       image tag [default: $CHATMESH_IMAGE or chatmesh:latest; with --prometheus
#                       $CHATMESH_PROMETHEUS_IMAGE or chatmesh-prometheus:latest]
#   -b, --binary FILE   the chatmesh binary [default: target/release/chatmesh, built with
#                       `cargo build --release` when missing; with --prometheus /usr/bin/prometheus]
#       --cargo         run `cargo build --release` first even if the binary exists
#       --no-strip      keep the binary's debug information (the image is then ~5x larger)
#       --keep-context  keep the prepared build context directory and print where it is
#       --prometheus    build the Prometheus image instead (prometheus.Dockerfile): the binary from the
#                       Debian package `prometheus` (apt-get install prometheus), its web UI files and
#                       deploy/prometheus.yml as the default config; runs as nobody (65534)
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DEPLOY/.." && pwd)
TAG=${CHATMESH_IMAGE:-chatmesh:latest}
BIN=""
CARGO=0
STRIP=1
KEEP=0
PROM=0
TAG_SET=0
UID_GID=10001
PROM_UID=65534

die() { echo "build-image: $*" >&2; exit 1; }
say() { echo "build-image: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        -t|--tag) [ $# -ge 2 ] || die "$1 needs a value"; TAG=$2; TAG_SET=1; shift 2 ;;
        -b|--binary) [ $# -ge 2 ] || die "$1 needs a value"; BIN=$2; shift 2 ;;
        --cargo) CARGO=1; shift ;;
        --no-strip) STRIP=0; shift ;;
        --keep-context) KEEP=1; shift ;;
        --prometheus) PROM=1; shift ;;
        -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

for tool in docker ldd; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

if [ "$PROM" = 1 ]; then
    [ "$TAG_SET" = 1 ] || TAG=${CHATMESH_PROMETHEUS_IMAGE:-chatmesh-prometheus:latest}
    [ "$CARGO" = 0 ] || die "--cargo builds chatmesh, not prometheus"
    BIN=${BIN:-/usr/bin/prometheus}
    [ -x "$BIN" ] || die "no Prometheus server at $BIN: install the Debian package \`prometheus\` (apt-get install -y --no-install-recommends prometheus), or pass --binary FILE"
    STRIP=0       # Debian's binary is stripped already
elif [ -z "$BIN" ]; then
    BIN=$ROOT/target/release/chatmesh
    if [ "$CARGO" = 1 ] || [ ! -x "$BIN" ]; then
        command -v cargo >/dev/null || die "$BIN does not exist and cargo is not installed"
        say "cargo build --release"
        (cd "$ROOT" && cargo build --release)
    fi
fi
[ -x "$BIN" ] || die "no executable at $BIN (build it with cargo build --release, or pass --binary FILE)"

CTX=$(mktemp -d "${TMPDIR:-/tmp}/chatmesh-image.XXXXXX")
if [ "$KEEP" = 1 ]; then
    trap 'say "build context kept in $CTX"' EXIT
else
    trap 'rm -rf "$CTX"' EXIT
fi
ROOTFS=$CTX/rootfs
# Where the binary goes in the image, and the directories its user owns (volumes' mount points).
if [ "$PROM" = 1 ]; then
    DEST=/usr/bin/prometheus
    OWNED=(prometheus)
else
    DEST=/usr/local/bin/chatmesh
    OWNED=(data logs)
fi
mkdir -p "$ROOTFS$(dirname "$DEST")" "$ROOTFS/etc" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
chmod 0755 "$ROOTFS" "$ROOTFS/usr" "$ROOTFS$(dirname "$DEST")" "$ROOTFS/etc"
for d in "${OWNED[@]}"; do mkdir -p "$CTX/owned/$d"; chmod 0755 "$CTX/owned/$d"; done

# The binary (a copy: the original may be rebuilt while we work).
cp "$BIN" "$ROOTFS$DEST"
if [ "$STRIP" = 1 ]; then
    if command -v strip >/dev/null; then
        strip --strip-debug "$ROOTFS$DEST"   # keeps the symbols for panic backtraces
    else
        say "strip is not installed: the binary keeps its debug information"
    fi
fi
chmod 0755 "$ROOTFS$DEST"

# The shared objects a file needs, as absolute paths, from ldd: "name => /path (addr)" lines and the loader's
# "/path (addr)" line; the vDSO has no file. A missing library is an error.
deps() {
    local out
    out=$(ldd "$1" 2>&1) || {
        # "not a dynamic executable" (static): nothing to copy.
        case "$out" in *"not a dynamic executable"*|*"statically linked"*) return 0 ;; esac
        die "ldd $1 failed: $out"
    }
    if grep -q "not found" <<<"$out"; then
        die "ldd $1: a library is missing on this machine: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$out"
}

declare -A COPIED=()
LIBDIRS=()
copy_lib() {
    local src=$1 dest
    [ -n "${COPIED[$src]:-}" ] && return 0
    COPIED[$src]=1
    dest=$ROOTFS$src
    mkdir -p "$(dirname "$dest")"
    cp -L "$src" "$dest"          # under the name the loader looks for, even when that is a symlink
    chmod 0755 "$dest"
    local d; d=$(dirname "$src")
    case " ${LIBDIRS[*]:-} " in *" $d "*) ;; *) LIBDIRS+=("$d") ;; esac
    local list dep
    list=$(deps "$src")
    for dep in $list; do copy_lib "$dep"; done
}

LIBC=""
BINDEPS=$(deps "$BIN")
for lib in $BINDEPS; do
    copy_lib "$lib"
    case "$(basename "$lib")" in libc.so.*) LIBC=$lib ;; esac
done
[ -n "$LIBC" ] || die "ldd does not show libc for $BIN: is it a glibc binary?"

# getaddrinfo loads its NSS modules at run time (dlopen, invisible to ldd): hosts from /etc/hosts (files)
# and from the resolver in /etc/resolv.conf (dns; Docker's embedded DNS resolves compose service names).
# Since glibc 2.34 both are inside libc and these files are empty stubs, but older glibc needs them.
LIBDIR=$(dirname "$LIBC")
NSS=()
for mod in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
    if [ -e "$LIBDIR/$mod" ]; then
        copy_lib "$LIBDIR/$mod"
        NSS+=("$mod")
    fi
done

cat >"$ROOTFS/etc/nsswitch.conf" <<'EOF'
passwd: files
group:  files
hosts:  files dns
EOF
# The one user the image runs as (numeric in the Dockerfile; named here for tools that look it up).
if [ "$PROM" = 1 ]; then
    USER_LINE="nobody:x:$PROM_UID:$PROM_UID:nobody:/prometheus:/nonexistent" GROUP_LINE="nogroup:x:$PROM_UID:"
else
    USER_LINE="chatmesh:x:$UID_GID:$UID_GID:ChatMesh:/data:/nonexistent" GROUP_LINE="chatmesh:x:$UID_GID:"
fi
printf 'root:x:0:0:root:/root:/nonexistent\n%s\n' "$USER_LINE" >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n%s\n' "$GROUP_LINE" >"$ROOTFS/etc/group"
chmod 0644 "$ROOTFS/etc/nsswitch.conf" "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"

if [ "$PROM" = 1 ]; then
    # The default config (compose mounts deploy/prometheus.yml over it, so edits need no rebuild) and the
    # web UI's files, which Debian's build reads from /usr/share/prometheus/web (without them only the
    # HTTP API works). Scraping is plain HTTP on the bridge network: no CA certificates are needed.
    mkdir -p "$ROOTFS/etc/prometheus"
    cp "$DEPLOY/prometheus.yml" "$ROOTFS/etc/prometheus/prometheus.yml"
    chmod 0755 "$ROOTFS/etc/prometheus"
    chmod 0644 "$ROOTFS/etc/prometheus/prometheus.yml"
    if [ -d /usr/share/prometheus/web ]; then
        mkdir -p "$ROOTFS/usr/share/prometheus"
        cp -r /usr/share/prometheus/web "$ROOTFS/usr/share/prometheus/web"
        chmod -R a+rX "$ROOTFS/usr/share"
    else
        say "no /usr/share/prometheus/web: the image's Prometheus serves its HTTP API but not its web UI"
    fi
fi

# A loader cache for the copied directories, so that a library outside the loader's built-in search path
# is still found (best effort: on Debian and most systems the built-in path already covers them).
printf '%s\n' "${LIBDIRS[@]}" >"$ROOTFS/etc/ld.so.conf"
if command -v ldconfig >/dev/null || [ -x /sbin/ldconfig ]; then
    LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
    "$LDCONFIG" -r "$ROOTFS" 2>/dev/null || say "ldconfig -r failed; relying on the loader's built-in search path"
fi
[ -e "$ROOTFS/etc/ld.so.cache" ] && chmod 0644 "$ROOTFS/etc/ld.so.cache"

if [ "$PROM" = 1 ]; then
    cp "$DEPLOY/prometheus.Dockerfile" "$CTX/Dockerfile"
else
    cp "$DEPLOY/Dockerfile" "$CTX/Dockerfile"
fi

say "binary $(du -h "$ROOTFS$DEST" | cut -f1) from $BIN ($("$BIN" --version 2>&1 | head -1 || echo '?'))"
say "libraries: $(for l in "${!COPIED[@]}"; do echo "$l"; done | sort | tr '\n' ' ')"
say "NSS modules present as files: ${NSS[*]:-none (built into libc)}"
say "docker build -t $TAG"
OLD_ID=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
if ! docker build -t "$TAG" "$CTX" >"$CTX/build.log" 2>&1; then
    cat "$CTX/build.log" >&2
    die "docker build failed"
fi
# The image this tag named before is left untagged: remove it unless a container still uses it.
NEW_ID=$(docker image inspect -f '{{.Id}}' "$TAG")
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi

# Smoke test: the loader, the libraries and the binary work inside the image.
version=$(docker run --rm --network none "$TAG" --version 2>&1 | head -1) || die "the image $TAG does not run: docker run --rm $TAG --version failed"
say "built $TAG: $version, $(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.1f MB", $1/1e6}')"
