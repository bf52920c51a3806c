#!/bin/sh
# udhcpc's hook in virtwire's test guest: configure eth0 from the lease and report it.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    # the first NIC is the guest's own: its default route, its address in /www and lease.env
    if [ "$interface" = eth0 ]; then
      [ -n "$router" ] && ip route replace default via "${router%% *}"
      printf '%s %s\n' "$(hostname)" "$ip" > /www/index.html
      printf 'ip=%s\nmask=%s\nrouter=%s\n' "$ip" "$mask" "${router%% *}" > /tmp/lease.env
    fi
    echo "VIRTWIRE-LEASE ip=$ip mask=$mask router=$router uptime=$(cut -d" " -f1 /proc/uptime) iface=$interface"
    ;;
esac
exit 0
