#!/bin/sh
# Run INSIDE the test guest: create Soft-RoCE devices for viaduct's verbs tests.
#   guest-rxe-up.sh dummy        rxe0 on dummy netdev rxd0, 10.77.0.1 (one "host")
#   guest-rxe-up.sh pair         two "hosts" joined by a veth wire: rxeA on va (10.77.1.1),
#                                rxeB on vb (10.77.1.2); cut it with
#                                'tc qdisc add dev va root netem loss 100%' or 'ip link set va down'
#   guest-rxe-up.sh pair-rewire  restore the wire after a link down and recreate rxeA/rxeB
# Not 'lo': rdma_cm cannot resolve a route over loopback. All addresses exist only in the guest.
set -e
[ -n "${VIADUCT_RXEVM:-}" ] || { echo "guest-rxe-up.sh: run inside tests/rxe/rxevm.sh"; exit 2; }
mode=${1:-dummy}
case $mode in
dummy)
  ip link add rxd0 type dummy
  ip addr add 10.77.0.1/24 dev rxd0
  ip link set rxd0 up
  rdma link add rxe0 type rxe netdev rxd0 ;;
pair|pair-rewire)
  # One network namespace on purpose: rxe in 6.1 uses init_net for its UDP socket and routes, so
  # rxe devices in two namespaces never talk. Policy routing makes traffic between the two
  # addresses really cross the veth (the kernel would otherwise short-cut them through lo).
  if [ "$mode" = pair ]; then
    sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
               net.ipv4.conf.all.accept_local=1 net.ipv4.conf.default.accept_local=1
    ip link add va type veth peer name vb
    for d in va vb; do sysctl -qw net.ipv4.conf.$d.rp_filter=0 net.ipv4.conf.$d.accept_local=1; done
    ip addr add 10.77.1.1/32 dev va
    ip addr add 10.77.1.2/32 dev vb
    ip rule add pref 100 lookup local
    ip rule del pref 0
    ip rule add pref 10 iif va lookup 101
    ip rule add pref 11 iif vb lookup 102
  fi
  ip link set va up
  ip link set vb up
  # the addresses must be local while the src= routes are added (prefsrc check) ...
  ip route replace local 10.77.1.1 dev va table local
  ip route replace local 10.77.1.2 dev vb table local
  ip route replace 10.77.1.2/32 dev va src 10.77.1.1
  ip route replace 10.77.1.1/32 dev vb src 10.77.1.2
  # ... then each is local only to packets arriving on its own veth end
  while ip route del local 10.77.1.1 dev va table local 2>/dev/null; do :; done
  while ip route del local 10.77.1.2 dev vb table local 2>/dev/null; do :; done
  ip route replace local 10.77.1.1 dev va table 101
  ip route replace local 10.77.1.2 dev vb table 102
  # Static neighbours: the first ARP across the fresh veth was measured to get lost, which made
  # the first rdma_resolve_addr time out; and ARP must not depend on a wire a test is cutting.
  ip neigh replace 10.77.1.1 lladdr "$(cat /sys/class/net/va/address)" dev vb nud permanent
  ip neigh replace 10.77.1.2 lladdr "$(cat /sys/class/net/vb/address)" dev va nud permanent
  # After a link down under a live connection the device's CM (GSI QP1) stops answering although
  # data QPs work; a fresh rxe device fixes it.
  if [ "$mode" = pair-rewire ]; then
    rdma link delete rxeA
    rdma link delete rxeB
  fi
  rdma link add rxeA type rxe netdev va
  rdma link add rxeB type rxe netdev vb ;;
*)
  echo "usage: $0 dummy|pair|pair-rewire"
  exit 2 ;;
esac
# rdma_cm needs the port ACTIVE and the IPv4-mapped GID populated before the first resolve
i=0
while [ $i -lt 50 ]; do
  n=$(cat /sys/class/infiniband/*/ports/1/gids/1 2>/dev/null | grep -c ffff || true)
  [ "$n" -gt 0 ] && break
  sleep 0.1
  i=$((i + 1))
done
rdma link show 2>/dev/null || true
