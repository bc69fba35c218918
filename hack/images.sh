#!/usr/bin/env bash
# Builds ferrolb's two container images (controller, speaker) from this checkout, daemonless,
# with buildah: CI runs it, and so does the release workflow (.github/workflows/release.yml).
#
#   hack/images.sh [--registry REG] [--tag TAG] [--out DIR] [--check] [--push] [--no-build]
#
#   --registry REG  image names are REG/ferrolb-controller and REG/ferrolb-speaker
#                   (default ghcr.io/ferrolb, what the chart pulls)
#   --tag TAG       image tag (default: the workspace version, which is the chart's appVersion)
#   --out DIR       where the OCI archives go (default dist/); `podman load -i`, `docker load -i`
#                   and `skopeo copy oci-archive:FILE docker://...` take them
#   --check         run each image's binary from the image's own root filesystem (chroot):
#                   `--version` and `--help` must exit 0 and name the component and version
#   --push          push both images to REG (log in first: `buildah login REG`)
#   --no-build      use target/release binaries already built
#
# Prints one line per image with its uncompressed size. Needs root (or a user namespace set up
# for buildah) and the Debian packages buildah and binutils.
set -euo pipefail
cd "$(dirname "$0")/.."

registry=ghcr.io/ferrolb
tag=
out=dist
check=
push=
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --check) check=1; shift ;;
    --push) push=1; shift ;;
    --no-build) build=; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hack/images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "hack/images.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
tag=${tag:-$version}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# vfs and chroot isolation: no overlay mounts, no container runtime, works inside CI sandboxes.
bah=(buildah --storage-driver vfs)

if [ -n "$build" ]; then
  cargo build --release --locked --bin ferrolb-controller --bin ferrolb-speaker
fi

stage=target/images/stage
rm -rf "$stage"
mkdir -p "$stage" "$out"

# stage_rootfs COMPONENT: the binary, the libraries it loads, CA certificates, users, license.
stage_rootfs() {
  local component=$1 root="$stage/$1" bin="target/release/ferrolb-$1"
  [ -x "$bin" ] || { echo "hack/images.sh: $bin is not built" >&2; exit 1; }
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/licenses" "$root/tmp"
  chmod 1777 "$root/tmp"
  install -m 0755 "$bin" "$root/usr/local/bin/ferrolb-$component"
  strip "$root/usr/local/bin/ferrolb-$component"
  # Every shared object the dynamic loader resolves, the loader itself included, at its path.
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  cp LICENSE "$root/licenses/LICENSE"
}

# build_image COMPONENT DESCRIPTION
build_image() {
  local component=$1 description=$2 image="$registry/ferrolb-$1:$tag"
  stage_rootfs "$component"
  local meta=()
  for kv in \
    "org.opencontainers.image.title=ferrolb-$component" \
    "org.opencontainers.image.description=$description" \
    "org.opencontainers.image.source=https://github.com/ferrolb/ferrolb" \
    "org.opencontainers.image.revision=$revision" \
    "org.opencontainers.image.version=$tag" \
    "org.opencontainers.image.licenses=Apache-2.0"; do
    meta+=(--label "$kv" --annotation "$kv")
  done
  "${bah[@]}" bud --quiet --isolation chroot --target "$component" \
    -f images/Containerfile.prebuilt "${meta[@]}" -t "$image" "$stage" >/dev/null
  local archive="$out/ferrolb-$component-$tag.oci.tar"
  rm -f "$archive"
  "${bah[@]}" push --quiet "$image" "oci-archive:$archive:$image"
  local bytes
  bytes=$(du -sb "$stage/$component" | cut -f1)
  printf 'image %s size_mib=%s archive=%s\n' "$image" \
    "$(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}')" "$archive"
  if [ -n "$check" ]; then check_image "$component" "$image"; fi
  if [ -n "$push" ]; then "${bah[@]}" push "$image" "docker://$image"; fi
}

# check_image COMPONENT IMAGE: mount the built image and run its binary inside it.
check_image() {
  local component=$1 image=$2 ctr mnt
  ctr=$("${bah[@]}" from --quiet "$image")
  mnt=$("${bah[@]}" mount "$ctr")
  local ok=1 text
  text=$(chroot "$mnt" "/usr/local/bin/ferrolb-$component" --version 2>&1) || ok=
  case "$text" in *"ferrolb-$component $version"*) ;; *) ok= ;; esac
  echo "check ferrolb-$component --version: $text"
  text=$(chroot "$mnt" "/usr/local/bin/ferrolb-$component" --help 2>&1) || ok=
  case "$text" in *"Usage: ferrolb-$component"*) ;; *) ok= ;; esac
  echo "check ferrolb-$component --help: $(printf '%s\n' "$text" | head -1)"
  # Nothing but the binary and its libraries: no shell, no package manager.
  for tool in bin/sh usr/bin/apt usr/bin/dpkg; do
    if [ -e "$mnt/$tool" ]; then echo "check: /$tool present in ferrolb-$component" >&2; ok=; fi
  done
  "${bah[@]}" umount "$ctr" >/dev/null
  "${bah[@]}" rm "$ctr" >/dev/null
  [ -n "$ok" ] || { echo "hack/images.sh: ferrolb-$component does not run from its image" >&2; exit 1; }
}

build_image controller "ferrolb controller: assigns LoadBalancer IPs from IPAddressPools"
build_image speaker "ferrolb speaker: answers ARP/NDP for the LoadBalancer IPs its node owns"
