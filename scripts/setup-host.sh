#!/usr/bin/env bash
# Installs the system packages cleanroom's build and test suite need, on Debian 12
# (Ubuntu too, but for runsc: see the end). Run as root. CI (.ci/run) and the
# README's quick start both use it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
# bubblewrap: the linux-ns backend; gcc + libc6-dev: its nsinit helper, and the cross compiler of the other
# architecture the package ships a prebuilt helper for; git, iproute2, curl, openssl: tests;
# git-lfs (a sandbox's LFS config must never make the host's git-lfs call out) and e2fsprogs (chattr, to make a write fail part-way): boundary tests.
case "$(dpkg --print-architecture)" in
  arm64) cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;;
  *) cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
esac
# zstd: zstd-compressed image layers; docker-registry, apache2-utils (bcrypt htpasswd), busybox-static: the image tests' registry and images.
apt-get install -y -qq --no-install-recommends bubblewrap git ca-certificates gcc libc6-dev $cross iproute2 curl openssl git-lfs e2fsprogs zstd docker-registry apache2-utils busybox-static >/dev/null

# runsc: the gvisor backend. Debian 12's own (20221219) cannot stat a bind-mount root: take bookworm-backports'.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" = bookworm ]; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -t bookworm-backports runsc >/dev/null
  runsc --version | head -1
else
  echo "setup-host: not Debian 12: install gVisor's runsc yourself (https://gvisor.dev/docs/user_guide/install/), or the gvisor tests fail saying it is missing" >&2
fi
