#!/bin/busybox sh
# init of virtwire's lab host: a small "hypervisor host" with a kernel that has 802.1Q, for
# proving VLAN uplinks (see lib/testing/lab-image.ts). eth0 is management (SSH), eth1 the
# "physical" NIC on the lab switch. Kernel command line:
#   vw.name=<name> vw.mgmt=<ip/prefix> vw.sshkey=<type>:<base64 public key>
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root/.ssh /etc/dropbear /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/netns /dev/pts
mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# the kernel loads modules on demand (nf_tables, 8021q, vxlan…) through this modprobe
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for m in virtio_pci virtio_net; do modprobe "$m" || echo "VIRTWIRE-ERROR modprobe $m"; done

name=lab; mgmt=; key=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vw.name=*) name="${arg#vw.name=}" ;;
    vw.mgmt=*) mgmt="${arg#vw.mgmt=}" ;;
    vw.sshkey=*) key="${arg#vw.sshkey=}" ;;
  esac
done
hostname "$name"
ip link set lo up
ip link set eth0 up
ip link set eth1 up
[ -n "$mgmt" ] && ip addr add "$mgmt" dev eth0
echo "${key%%:*} ${key#*:} virtwire-lab" > /root/.ssh/authorized_keys
chmod 700 /root/.ssh; chmod 600 /root/.ssh/authorized_keys
dropbear -R -E -s -p 22 -P /run/dropbear.pid
echo "VIRTWIRE-LAB-READY name=$name mgmt=$mgmt"
while :; do sleep 3600; done
