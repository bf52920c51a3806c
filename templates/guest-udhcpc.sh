#!/bin/sh
# udhcpc's hook in virtwire's test guest: configure eth0 from the lease and report it.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    printf '%s %s\n' "$(hostname)" "$ip" > /www/index.html
    printf 'ip=%s\nmask=%s\nrouter=%s\n' "$ip" "$mask" "${router%% *}" > /tmp/lease.env
    echo "VIRTWIRE-LEASE ip=$ip mask=$mask router=$router uptime=$(cut -d" " -f1 /proc/uptime)"
    ;;
esac
exit 0
