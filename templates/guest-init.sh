#!/bin/busybox sh
# init of virtwire's test guest (a Debian kernel + busybox initramfs; see lib/testing).
# Takes a DHCP lease on eth0 and prints it on the serial console, serves HTTP on port 80 (its
# name and address), and runs the probes given on the kernel command line in rounds:
#   vw.name=<name> vw.probes=ping:10.10.0.12,http:203.0.113.2:8080
# Console lines for tests: VIRTWIRE-LEASE ip=…, VIRTWIRE-PROBE round=N <kind> <target> ok|fail.
/bin/busybox mkdir -p /proc /sys /dev /tmp /www /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1

for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" || echo "VIRTWIRE-ERROR insmod $m"; done

name=guest
probes=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vw.name=*) name="${arg#vw.name=}" ;;
    vw.probes=*) probes="${arg#vw.probes=}" ;;
  esac
done
hostname "$name"
ip link set lo up
ip link set eth0 up
echo "VIRTWIRE-BOOT name=$name"

until udhcpc -i eth0 -s /bin/udhcpc-script -q -t 10 -T 1 -n; do echo "VIRTWIRE-DHCP retry"; done

# 4 MiB to download: what a QoS test measures the guest's sending rate with
dd if=/dev/zero of=/www/big bs=1024 count=4096 2>/dev/null
httpd -p 80 -h /www

round=0
while [ -n "$probes" ]; do
  round=$((round + 1))
  for p in $(echo "$probes" | tr ',' ' '); do
    kind="${p%%:*}"
    target="${p#*:}"
    case "$kind" in
      ping) ping -c 1 -W 1 "$target" >/dev/null 2>&1 && r=ok || r=fail ;;
      http) timeout 3 wget -q -O /dev/null "http://$target/" >/dev/null 2>&1 && r=ok || r=fail ;;
      *) r=unknown ;;
    esac
    echo "VIRTWIRE-PROBE round=$round $kind $target $r"
  done
  sleep 1
done
while :; do sleep 3600; done
