#!/bin/busybox sh
# init of virtwire's test guest (a Debian kernel + busybox initramfs; see lib/testing).
# Takes a DHCP lease on eth0 and prints it on the serial console, serves HTTP on ports 80 and 22
# (its name and address) and echoes on port 7, and runs the probes given on the kernel command
# line in rounds:
#   vw.name=<name> vw.probes=ping:10.10.0.12,http:203.0.113.2:8080,tcp:10.10.0.1:22,dns:web
# Console lines for tests: VIRTWIRE-LEASE ip=… iface=…, VIRTWIRE-PROBE round=N <kind> <target> ok|fail
# (whoami:<ip>: the name the guest there answers with, or fail),
# VIRTWIRE-BLOCK <dev> bytes=N for each disk at boot, VIRTWIRE-NIC added|gone <dev> when NICs are
# hot-plugged (each added one takes a DHCP lease), VIRTWIRE-ECHO <line> for each line written to
# its serial console, VIRTWIRE-READY once its services listen, VIRTWIRE-HOLD <ip> echo=N | stalled …
# for a held connection (vw.hold=<ip>).
#
# For tenant-security tests it can also be the hostile tenant, each round (vw.attacks=…,
# vw.victim=<ip of a neighbour>): dhcpd (a rogue DHCP server on eth0, offering .200-.210 with
# router .66), arpgw (gratuitous ARP claiming the gateway's address), spoofip (pings the victim
# from .99), spoofmac (pings the victim from MAC 52:54:00:66:66:66). Lines: VIRTWIRE-ATTACK …
/bin/busybox mkdir -p /proc /sys /dev /tmp /www /usr/bin /sbin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1

for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" || echo "VIRTWIRE-ERROR insmod $m"; done

name=guest
probes=
attacks=
victim=
hold=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vw.name=*) name="${arg#vw.name=}" ;;
    vw.probes=*) probes="${arg#vw.probes=}" ;;
    vw.attacks=*) attacks="${arg#vw.attacks=}" ;;
    vw.victim=*) victim="${arg#vw.victim=}" ;;
    vw.hold=*) hold="${arg#vw.hold=}" ;;
  esac
done
has() { case ",$attacks," in *",$1,"*) return 0 ;; esac; return 1; }
hostname "$name"
ip link set lo up
ip link set eth0 up
echo "VIRTWIRE-BOOT name=$name"

until udhcpc -i eth0 -s /bin/udhcpc-script -q -t 10 -T 1 -n; do echo "VIRTWIRE-DHCP retry"; done

for d in /sys/block/vd*; do
  [ -e "$d/size" ] && echo "VIRTWIRE-BLOCK ${d##*/} bytes=$(($(cat "$d/size") * 512))"
done

# hot-plugged NICs: each new one comes up and takes its lease; a removed one is reported
touch /tmp/nics
(
  while :; do
    for n in /sys/class/net/eth*; do
      dev="${n##*/}"
      [ -e "$n" ] && [ "$dev" != eth0 ] && ! grep -qx "$dev" /tmp/nics || continue
      echo "$dev" >>/tmp/nics
      echo "VIRTWIRE-NIC added $dev"
      ip link set "$dev" up
      (until udhcpc -i "$dev" -s /bin/udhcpc-script -q -t 10 -T 1 -n; do sleep 1; done) &
    done
    for dev in $(cat /tmp/nics); do
      [ -e "/sys/class/net/$dev" ] && continue
      echo "VIRTWIRE-NIC gone $dev"
      grep -vx "$dev" /tmp/nics >/tmp/nics.new; mv /tmp/nics.new /tmp/nics
    done
    sleep 1
  done
) &

# lines written to the console come back, so a test can see its input arrive
(while read -r line; do echo "VIRTWIRE-ECHO $line"; done) </dev/console &

# 4 MiB to download: what a QoS test measures the guest's sending rate with
dd if=/dev/zero of=/www/big bs=1024 count=4096 2>/dev/null
httpd -p 80 -h /www
# a second TCP service (a dropped connection is told from a refused one), and an echo service
httpd -p 22 -h /www
nc -ll -p 7 -e cat &
# said only once all three listen (the daemons return before they bind)
until [ "$(netstat -ltn | grep -cE ':(80|22|7) ')" -ge 3 ]; do usleep 50000; done
echo "VIRTWIRE-READY http=80,22 echo=7"

# vw.hold=<ip>: one long-lived connection to <ip>'s echo service, a line a second. Each echo is
# printed; a connection that stops echoing for 3 s is reported once as stalled (a firewall that
# cut it drops its packets: no reset, nothing else would tell)
if [ -n "$hold" ]; then
  (
    until nc -w 2 "$hold" 7 </dev/null >/dev/null 2>&1; do sleep 1; done
    echo 0 >/tmp/hold.echoed
    (i=0; while :; do i=$((i + 1)); echo "$i" >/tmp/hold.sent; echo "$i"; sleep 1; done) | nc "$hold" 7 |
      while read -r n; do echo "$n" >/tmp/hold.echoed; echo "VIRTWIRE-HOLD $hold echo=$n"; done
  ) &
  (
    until [ -f /tmp/hold.echoed ] && [ "$(cat /tmp/hold.echoed)" -gt 0 ]; do sleep 1; done
    while :; do
      sent=$(cat /tmp/hold.sent); echoed=$(cat /tmp/hold.echoed)
      if [ $((sent - echoed)) -gt 3 ]; then echo "VIRTWIRE-HOLD $hold stalled after echo=$echoed"; break; fi
      sleep 1
    done
  ) &
fi

. /tmp/lease.env # ip, mask, router (written by the udhcpc hook)
net="${ip%.*}"
if has dhcpd; then
  printf 'start %s.200\nend %s.210\ninterface eth0\nopt router %s.66\nopt subnet 255.255.255.0\nlease_file /tmp/udhcpd.leases\n' "$net" "$net" "$net" >/tmp/udhcpd.conf
  touch /tmp/udhcpd.leases
  udhcpd /tmp/udhcpd.conf && echo "VIRTWIRE-ATTACK dhcpd started range=$net.200-$net.210 router=$net.66"
fi

attack() {
  if has arpgw; then
    # arping only sends from a local address: the gateway's, for a moment
    ip addr add "$router/32" dev eth0 2>/dev/null
    arping -U -c 1 -I eth0 -s "$router" "$router" >/dev/null 2>&1
    ip addr del "$router/32" dev eth0 2>/dev/null
    echo "VIRTWIRE-ATTACK round=$round arpgw $router"
  fi
  if has spoofip && [ -n "$victim" ]; then
    ip addr add "$net.99/32" dev eth0 2>/dev/null
    ping -c 1 -W 1 -I "$net.99" "$victim" >/dev/null 2>&1 && r=answered || r=unanswered
    ip addr del "$net.99/32" dev eth0 2>/dev/null
    echo "VIRTWIRE-ATTACK round=$round spoofip $net.99 $victim $r"
  fi
  if has spoofmac && [ -n "$victim" ]; then
    own=$(cat /sys/class/net/eth0/address)
    ip link set eth0 address 52:54:00:66:66:66
    ping -c 1 -W 1 "$victim" >/dev/null 2>&1 && r=answered || r=unanswered
    ip link set eth0 address "$own"
    echo "VIRTWIRE-ATTACK round=$round spoofmac 52:54:00:66:66:66 $victim $r"
  fi
}

round=0
while [ -n "$probes$attacks" ]; do
  round=$((round + 1))
  [ -n "$attacks" ] && attack
  for p in $(echo "$probes" | tr ',' ' '); do
    kind="${p%%:*}"
    target="${p#*:}"
    case "$kind" in
      ping) ping -c 1 -W 1 "$target" >/dev/null 2>&1 && r=ok || r=fail ;;
      http) timeout 3 wget -q -O /dev/null "http://$target/" >/dev/null 2>&1 && r=ok || r=fail ;;
      whoami) r=$(timeout 3 wget -q -O - "http://$target/" 2>/dev/null | cut -d' ' -f1); [ -n "$r" ] || r=fail ;;
      tcp) nc -w 2 "${target%:*}" "${target##*:}" </dev/null >/dev/null 2>&1 && r=ok || r=fail ;;
      dns) nslookup "$target" "$router" >/dev/null 2>&1 && r=ok || r=fail ;;
      *) r=unknown ;;
    esac
    echo "VIRTWIRE-PROBE round=$round $kind $target $r"
  done
  sleep 1
done
while :; do sleep 3600; done
