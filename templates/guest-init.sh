#!/bin/busybox sh
# init of virtwire's test guest (a Debian kernel + busybox initramfs; see lib/testing).
# Takes a DHCP lease on eth0 and prints it on the serial console, serves HTTP on ports 80 and 22
# (its name and address) and echoes on port 7, and runs the probes given on the kernel command
# line in rounds:
#   vw.name=<name> vw.probes=ping:10.10.0.12,http:203.0.113.2:8080,tcp:10.10.0.1:22,dns:web
# Console lines for tests: VIRTWIRE-LEASE ip=… iface=…, VIRTWIRE-PROBE round=N <kind> <target> ok|fail
# (whoami:<ip>: the name the guest there answers with, or fail; aaaa:<name>: the IPv6 address
# its name has, or fail; addrs6:<dev>: its global IPv6 addresses, comma-separated, or none),
# VIRTWIRE-ADDR6 ip6=… once the kernel's SLAAC gave eth0 a global IPv6 address (on a network with
# IPv6; ping6:<ip6> and http:[<ip6>] probe over it),
# VIRTWIRE-BLOCK <dev> bytes=N for each disk at boot, VIRTWIRE-NIC added|gone <dev> when NICs are
# hot-plugged (each added one takes a DHCP lease), VIRTWIRE-ECHO <line> for each line written to
# its serial console, VIRTWIRE-READY once its services listen, VIRTWIRE-HOLD <ip> echo=N | stalled …
# for a held connection (vw.hold=<ip>).
#
# For tenant-security tests it can also be the hostile tenant, each round (vw.attacks=…,
# vw.victim=<ip of a neighbour>): dhcpd (a rogue DHCP server on eth0, offering .200-.210 with
# router .66), arpgw (gratuitous ARP claiming the gateway's address), spoofip (pings the victim
# from .99), spoofmac (pings the victim from MAC 52:54:00:66:66:66), spoof6 (pings vw.victim6=<ip6>
# from its /64's ::99), ra6 (a rogue router advertisement of fd00:66::/64 to all nodes, sent by
# /bin/icmp6send). Lines: VIRTWIRE-ATTACK …
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
victim6=
hold=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vw.name=*) name="${arg#vw.name=}" ;;
    vw.probes=*) probes="${arg#vw.probes=}" ;;
    vw.attacks=*) attacks="${arg#vw.attacks=}" ;;
    vw.victim=*) victim="${arg#vw.victim=}" ;;
    vw.victim6=*) victim6="${arg#vw.victim6=}" ;;
    vw.hold=*) hold="${arg#vw.hold=}" ;;
  esac
done
has() { case ",$attacks," in *",$1,"*) return 0 ;; esac; return 1; }
hostname "$name"
ip link set lo up
ip link set eth0 up
echo "VIRTWIRE-BOOT name=$name"

until udhcpc -i eth0 -s /bin/udhcpc-script -q -t 10 -T 1 -n; do echo "VIRTWIRE-DHCP retry"; done

# the first global IPv6 address SLAAC gives eth0 (none on a network without IPv6: nothing said)
addr6() { ip -6 addr show dev "$1" scope global | awk '/inet6/ && !/tentative/ { sub(/\/.*/, "", $2); print $2 }'; }
(for _ in $(seq 1 300); do a=$(addr6 eth0 | head -n 1); [ -n "$a" ] && { echo "VIRTWIRE-ADDR6 ip6=$a"; break; }; usleep 100000; done) &

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
  if has spoof6 && [ -n "$victim6" ]; then
    own6=$(addr6 eth0 | head -n 1)
    spoof6="${own6%:*}:99"
    # busybox's ip has no nodad: no duplicate detection for this one address
    echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad
    ip -6 addr add "$spoof6/128" dev eth0 2>/dev/null
    echo 1 >/proc/sys/net/ipv6/conf/eth0/accept_dad
    ping -6 -c 1 -W 1 -I "$spoof6" "$victim6" >/dev/null 2>&1 && r=answered || r=unanswered
    ip -6 addr del "$spoof6/128" dev eth0 2>/dev/null
    echo "VIRTWIRE-ATTACK round=$round spoof6 $spoof6 $victim6 $r"
  fi
  if has ra6; then
    ll=$(ip -6 addr show dev eth0 scope link | awk '/inet6/ { sub(/\/.*/, "", $2); print $2; exit }')
    mac=$(tr -d ':' </sys/class/net/eth0/address)
    # RA: hop limit 64, router lifetime 1800 s; prefix information fd00:66::/64 (on-link, SLAAC);
    # its source link-layer address
    ra=86000000400007080000000000000000030440c000278d0000093a8000000000fd000066000000000000000000000000
    icmp6send eth0 "$ll" ff02::1 "${ra}0101${mac}" && r=sent || r=failed
    echo "VIRTWIRE-ATTACK round=$round ra6 fd00:66::/64 from $ll $r"
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
      ping6) ping -6 -c 1 -W 1 "$target" >/dev/null 2>&1 && r=ok || r=fail ;;
      aaaa) r=$(nslookup -type=AAAA "$target" "$router" 2>/dev/null | awk '/^Address:/ && $2 ~ /:/ { print $2 }' | tail -n 1)
        [ -n "$r" ] || r=fail ;;
      addrs6) r=$(addr6 "$target" | sort | tr '\n' ',' | sed 's/,$//'); [ -n "$r" ] || r=none ;;
      *) r=unknown ;;
    esac
    echo "VIRTWIRE-PROBE round=$round $kind $target $r"
  done
  sleep 1
done
while :; do sleep 3600; done
