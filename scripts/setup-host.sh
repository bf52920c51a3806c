#!/usr/bin/env bash
# Prepares a Debian 12 host (as root) for virtwire's integration tier, demo and benchmarks.
# What it may change on the host, each only where it is not so already (a second run changes
# nothing and takes ~1 s):
#  - installs the Debian packages below that are missing (apt-get);
#  - creates the system user libvirt-qemu and group kvm if they do not exist, and puts
#    libvirt-qemu in kvm;
#  - sets /dev/kvm to root:kvm 0660, as udev does on every Debian host (without udev it stays
#    root:root 0600; libvirt then re-probes QEMU on every call, ~30-50 s per define);
#  - creates /var/log/libvirt and /var/lib/virtwire;
#  - starts virtlogd and libvirtd as daemons (no systemd) where they are not running, libvirtd
#    under `tini -s` (a subreaper: see below).
set -euo pipefail

PACKAGES=(
  qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-clients
  libvirt0 libxml2-utils dnsmasq-base nftables iptables iproute2 busybox-static cpio xorriso iperf3 procps
  kmod dropbear-bin tcpdump openssh-client iputils-ping util-linux mmdebstrap fdisk e2fsprogs jq bsdutils
  conntrack xz-utils zstd graphviz python3 tini gcc libc6-dev
)

if [ "$(id -u)" != 0 ]; then
  echo "setup-host: must run as root" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirtd without systemd (see shared design notes): the qemu user exists (libvirt-daemon-system
# creates libvirt-qemu), the log dir exists, then virtlogd and libvirtd run as daemons.
id libvirt-qemu >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin libvirt-qemu

# /dev/kvm as udev leaves it (Debian's udev rule: group kvm, mode 0660) with the QEMU user in
# kvm. libvirt probes QEMU's capabilities as root but validates its cache as the QEMU user: when
# only root can open /dev/kvm the two disagree, the cache is called outdated and QEMU is probed
# again on every API call. Whether guests then use KVM is virtwire's own decision (accel 'auto':
# vmx/svm in the CPU flags as well), not this device's mode.
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd --system kvm
  id -nG libvirt-qemu | tr ' ' '\n' | grep -qx kvm || { usermod -a -G kvm libvirt-qemu; echo "setup-host: libvirt-qemu added to group kvm"; }
  if [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
    echo "setup-host: /dev/kvm set to root:kvm 0660 (as udev would)"
  fi
fi
mkdir -p /var/log/libvirt /var/lib/virtwire
chmod 755 /var/lib/virtwire

# Security groups filter bridged IPv4 in the forward hook: that needs br_netfilter (virtwire turns
# it on per tenant bridge, nf_call_iptables) and conntrack. Built into some kernels (this one),
# modules on Debian's; loading the module also sets the global bridge-nf-call-* sysctls to 1.
if [ -e /proc/modules ] && [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  modprobe br_netfilter && echo "setup-host: loaded br_netfilter (for security groups)" ||
    echo "setup-host: br_netfilter unavailable: VMs with security groups will be refused" >&2
fi

# A first start probes QEMU's capabilities (it runs qemu-system under QMP), which on a busy
# 2-core machine has taken over 30 s; one answer may itself take several seconds.
alive() { timeout 30 virsh -c qemu:///system version >/dev/null 2>&1; }
LOG=/var/log/libvirt/libvirtd.log
if ! alive; then
  pgrep -x virtlogd >/dev/null || virtlogd -d
  # QEMU processes are orphans (libvirt daemonizes them): when one is killed, libvirt waits until
  # it is gone, and only its reaper makes it go. A host's PID 1 that is not a prompt reaper (a
  # container's; here every kill took 1.2-2 s to be reaped) makes every destroy that slow, so
  # libvirtd runs under tini as a subreaper: QEMU's orphans become tini's, reaped at once.
  if ! pgrep -x libvirtd >/dev/null; then
    LIBVIRT_LOG_OUTPUTS="3:file:$LOG" setsid tini -s -- libvirtd </dev/null >/dev/null 2>&1 &
  fi
  deadline=$((SECONDS + 180))
  until alive; do
    if [ $SECONDS -ge $deadline ]; then
      echo "setup-host: libvirtd did not answer on qemu:///system within 180 s" >&2
      pgrep -a 'libvirtd|virtlogd' >&2 || echo "setup-host: libvirtd is not running" >&2
      tail -n 30 "$LOG" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2 # polling an external daemon's socket: there is no event to wait on
  done
  echo "setup-host: libvirtd is up"
fi
