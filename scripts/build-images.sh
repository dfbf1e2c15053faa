#!/usr/bin/env bash
# Builds the container images of wscluster without a registry: both are
# FROM scratch, and every file comes from this checkout or this machine.
#
#   wscluster/node:dev   static /wscluster and /wscluster-netfault
#   wscluster/redis:dev  Debian's redis-server binary with its libraries
#
# The script stages each build context under docker/ first, with fixed
# paths, -trimpath binaries and a fixed mtime, so a second run reuses
# Docker's layer cache and yields the same image IDs. Running it again is
# safe. Run it from anywhere; paths are relative to the repository root.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/build-images.sh [flags]

flags:
  --node-image TAG   tag of the node image (env WSCLUSTER_NODE_IMAGE, default wscluster/node:dev)
  --redis-image TAG  tag of the Redis image (env WSCLUSTER_REDIS_IMAGE, default wscluster/redis:dev);
                     a tag outside wscluster/, such as redis:7, is used as is and not built
  --no-redis         build only the node image
  --tags TAGS        Go build tags of the node binary, e.g. wscluster_broken_nopurge for the
                     suite's deliberately broken test build (give it its own --node-image tag)
  --label KEY=VALUE  add a label to both images; repeatable
  --stage-only       stage the build contexts for docker-compose build, without building
  --stage-dir DIR    stage the contexts in DIR/node and DIR/redis instead of docker/ (tests use a
                     temporary directory so they leave the checkout alone)
  --print            print the image tags as shell assignments and exit
  -h, --help         print this help
EOF
}

fail() {
	echo "build-images: $*" >&2
	exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node_image=${WSCLUSTER_NODE_IMAGE:-wscluster/node:dev}
redis_image=${WSCLUSTER_REDIS_IMAGE:-wscluster/redis:dev}
build_redis=1
go_tags=
stage_only=0
print_only=0
labels=()
stage_dir=$root/docker

while [ $# -gt 0 ]; do
	case "$1" in
	--node-image) [ $# -ge 2 ] || fail "--node-image needs a TAG"; node_image=$2; shift 2 ;;
	--redis-image) [ $# -ge 2 ] || fail "--redis-image needs a TAG"; redis_image=$2; shift 2 ;;
	--no-redis) build_redis=0; shift ;;
	--tags) [ $# -ge 2 ] || fail "--tags needs TAGS"; go_tags=$2; shift 2 ;;
	--label) [ $# -ge 2 ] || fail "--label needs KEY=VALUE"; labels+=(--label "$2"); shift 2 ;;
	--stage-only) stage_only=1; shift ;;
	--stage-dir) [ $# -ge 2 ] || fail "--stage-dir needs a DIR"; stage_dir=$2; shift 2 ;;
	--print) print_only=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; fail "unknown argument '$1'" ;;
	esac
done

# An image outside wscluster/ is an upstream image the user pulls; building
# our Redis under that name would shadow it.
case "$redis_image" in
wscluster/*) ;;
*) build_redis=0 ;;
esac

if [ "$print_only" = 1 ]; then
	printf 'WSCLUSTER_NODE_IMAGE=%q\nWSCLUSTER_REDIS_IMAGE=%q\n' "$node_image" "$redis_image"
	exit 0
fi

mkdir -p "$stage_dir"
stage_dir=$(cd "$stage_dir" && pwd)

# Every staged file gets this mtime, so Docker's layer cache gets identical
# contexts on every run.
fixed_mtime=@0

# copy_sources copies the committed files of context $1 to the stage
# directory, unless it is docker/ itself.
copy_sources() {
	local dir=$1
	shift
	mkdir -p "$stage_dir/$dir"
	if [ "$(cd "$stage_dir/$dir" && pwd)" = "$root/docker/$dir" ]; then
		return
	fi
	local f
	for f in "$@"; do
		cp "$root/docker/$dir/$f" "$stage_dir/$dir/$f"
		touch -d "$fixed_mtime" "$stage_dir/$dir/$f"
	done
}

# stage_node compiles both static binaries into the node context.
stage_node() {
	command -v go >/dev/null || fail "go is not on PATH: install Go (see go.mod for the version)"
	copy_sources node Dockerfile
	local out=$stage_dir/node
	for cmd in wscluster wscluster-netfault; do
		(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -tags "$go_tags" -trimpath -buildvcs=false -ldflags=-buildid= -o "$out/$cmd" "./cmd/$cmd") ||
			fail "go build ./cmd/$cmd failed"
		chmod 0755 "$out/$cmd"
		touch -d "$fixed_mtime" "$out/$cmd"
	done
}

# stage_redis copies redis-server, the libraries ldd lists and the dynamic
# loader into rootfs/ of the Redis context, at their host paths.
stage_redis() {
	local server
	server=$(command -v redis-server) ||
		fail "redis-server is not on PATH: run scripts/install-deps.sh, or pass --no-redis and use WSCLUSTER_REDIS_IMAGE=redis:7 on a Docker that can pull"
	command -v ldd >/dev/null || fail "ldd is not on PATH: install libc-bin"
	copy_sources redis Dockerfile redis.conf
	local rootfs=$stage_dir/redis/rootfs
	rm -rf "$rootfs"
	mkdir -p "$rootfs/usr/bin"

	# Debian links redis-server to redis-check-rdb, which picks its role from
	# argv[0], so the copy must be a real file named redis-server.
	cp -L "$server" "$rootfs/usr/bin/redis-server"

	local deps
	deps=$(ldd "$server") || fail "ldd $server failed; is it a dynamic executable?"
	if grep -q 'not found' <<<"$deps"; then
		fail "ldd $server reports missing libraries: $(grep 'not found' <<<"$deps" | tr -s ' \t' ' ')"
	fi
	# Lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
	# or, for the loader, "/lib64/ld-linux-x86-64.so.2 (0x...)".
	local lib
	for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$deps" | sort -u); do
		mkdir -p "$rootfs$(dirname "$lib")"
		cp -L "$lib" "$rootfs$lib"
	done
	[ -n "$(find "$rootfs" -name 'ld-linux*' -print -quit)" ] ||
		fail "ldd $server listed no dynamic loader; is it a static binary?"
	find "$rootfs" -exec touch -h -d "$fixed_mtime" {} +
}

# build_image builds one staged context directory with a tag.
build_image() {
	local tag=$1 dir=$2
	echo "build-images: building $tag from $stage_dir/$dir" >&2
	docker build --quiet "${labels[@]}" --tag "$tag" "$stage_dir/$dir" >/dev/null ||
		fail "docker build of $tag failed; see the output above"
}

if [ "$stage_only" = 0 ]; then
	command -v docker >/dev/null || fail "docker is not on PATH: install Docker Engine, or use --stage-only to prepare the contexts"
	docker info >/dev/null 2>&1 || fail "cannot reach the Docker daemon (docker info failed): start it, or set DOCKER_HOST"
fi

stage_node
if [ "$build_redis" = 1 ]; then
	stage_redis
fi
if [ "$stage_only" = 1 ]; then
	echo "build-images: staged the contexts in $stage_dir; run docker-compose build" >&2
	exit 0
fi

build_image "$node_image" node
if [ "$build_redis" = 1 ]; then
	build_image "$redis_image" redis
else
	echo "build-images: not building $redis_image" >&2
fi
printf 'WSCLUSTER_NODE_IMAGE=%q\nWSCLUSTER_REDIS_IMAGE=%q\n' "$node_image" "$redis_image"
