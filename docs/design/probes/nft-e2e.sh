#!/bin/bash
# run inside: unshare -n bash /tmp/nft-e2e.sh   (this netns plays the host)
set -e
trap 'kill $(jobs -p) 2>/dev/null' EXIT
ip link set lo up
unshare -n sleep 60 & C=$!      # container netns
unshare -n sleep 60 & E=$!      # an "upstream" netns
sleep 0.2
inC="nsenter -t $C -n"; inE="nsenter -t $E -n"
ip link add strata0 type bridge; ip addr add 10.88.0.1/16 dev strata0; ip link set strata0 up
ip link add vethc type veth peer name eth0 netns $C; ip link set vethc master strata0 up; ip link set vethc type bridge_slave hairpin on
$inC ip link set lo up; $inC ip addr add 10.88.0.2/16 dev eth0; $inC ip link set eth0 up; $inC ip route add default via 10.88.0.1
ip link add up0 type veth peer name eth0 netns $E; ip addr add 192.0.2.1/24 dev up0; ip link set up0 up
$inE ip link set lo up; $inE ip addr add 192.0.2.2/24 dev eth0; $inE ip link set eth0 up
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.strata0.route_localnet=1
cat > /tmp/strata.nft <<'NFT'
add table inet strata
delete table inet strata
table inet strata {
  map tcp_any { type inet_service : ipv4_addr . inet_service; elements = { 18080 : 10.88.0.2 . 80 } }
  map tcp_addr { type ipv4_addr . inet_service : ipv4_addr . inet_service; elements = { 127.0.0.1 . 18081 : 10.88.0.2 . 81 } }
  set subnets { type ipv4_addr; flags interval; elements = { 10.88.0.0/16 } }
  set bridges { type ifname; elements = { "strata0" } }
  chain hostports {
    dnat ip to ip daddr . tcp dport map @tcp_addr
    dnat ip to tcp dport map @tcp_any
  }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local meta l4proto { tcp, udp } jump hostports
  }
  chain output { type nat hook output priority -100; policy accept;
    fib daddr type local meta l4proto { tcp, udp } jump hostports
  }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
    oifname @bridges ip saddr 127.0.0.0/8 masquerade
    oifname @bridges ct status dnat ip saddr @subnets masquerade
    oifname != @bridges ip saddr @subnets masquerade
  }
  chain forward { type filter hook forward priority filter; policy accept;
    iifname "strata0" oifname @bridges oifname != "strata0" drop
  }
}
NFT
nft -c -f /tmp/strata.nft && nft -f /tmp/strata.nft && echo applied
t0=$(date +%s%N); nft -f /tmp/strata.nft; t1=$(date +%s%N); echo "re-apply: $(( (t1-t0)/1000000 )) ms"
$inC socat TCP-LISTEN:80,reuseaddr,fork SYSTEM:'echo hello-from-80' & 
$inC socat TCP-LISTEN:81,reuseaddr,fork SYSTEM:'echo hello-from-81' &
$inE socat TCP-LISTEN:90,reuseaddr,fork SYSTEM:'echo upstream; echo peer=$SOCAT_PEERADDR' &
sleep 0.3
echo "1 lo any :18080 -> $(socat -T2 - TCP-CONNECT:127.0.0.1:18080,connect-timeout=2 </dev/null 2>&1 | tr '\n' ' ')"
echo "2 lo addr :18081 -> $(socat -T2 - TCP-CONNECT:127.0.0.1:18081,connect-timeout=2 </dev/null 2>&1 | tr '\n' ' ')"
echo "3 ext via 192.0.2.1:18080 -> $($inE socat -T2 - TCP-CONNECT:192.0.2.1:18080,connect-timeout=2 </dev/null 2>&1 | tr '\n' ' ')"
echo "4 ext via 192.0.2.1:18081 (bound to 127.0.0.1 only) -> $($inE timeout 2 socat -T1 - TCP:192.0.2.1:18081 </dev/null 2>&1 | head -1)"
echo "5 hairpin ctr->10.88.0.1:18080 -> $($inC socat -T2 - TCP-CONNECT:10.88.0.1:18080,connect-timeout=2 </dev/null 2>&1 | tr '\n' ' ')"
echo "6 outbound ctr->192.0.2.2:90 -> $($inC socat -T2 - TCP-CONNECT:192.0.2.2:90,connect-timeout=2 </dev/null | tr '\n' ' ')"
conntrack -L 2>/dev/null | head; nft list chain inet strata postrouting -a | head -0; ip -s link show vethc | head -4
nft list tables
echo 'add table inet strata
delete table inet strata' | nft -f - && nft list tables && echo "table gone"
kill $(jobs -p) 2>/dev/null || true
