/*
 * icmp6send <dev> <src> <dst> <hex>: one ICMPv6 message from the test guest, as a hostile guest
 * would send it (a router advertisement, a neighbour advertisement). The kernel fills in the
 * checksum of a raw ICMPv6 socket; the hop limit is 255, as neighbour discovery requires.
 * Built statically into virtwire's test guest (lib/testing/guest-image.ts), which has no other
 * way to send one: busybox has no raw ICMPv6 sender.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: icmp6send <dev> <src> <dst> <hex>\n");
    return 2;
  }
  unsigned char msg[1280];
  size_t len = strlen(argv[4]) / 2;
  if (len == 0 || len > sizeof msg || strlen(argv[4]) % 2) return 2;
  for (size_t i = 0; i < len; i++) {
    unsigned int b;
    if (sscanf(argv[4] + 2 * i, "%2x", &b) != 1) return 2;
    msg[i] = (unsigned char)b;
  }
  unsigned int scope = if_nametoindex(argv[1]);
  struct sockaddr_in6 src = {.sin6_family = AF_INET6, .sin6_scope_id = scope};
  struct sockaddr_in6 dst = {.sin6_family = AF_INET6, .sin6_scope_id = scope};
  if (!scope || inet_pton(AF_INET6, argv[2], &src.sin6_addr) != 1 || inet_pton(AF_INET6, argv[3], &dst.sin6_addr) != 1)
    return 2;
  int s = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  int hops = 255, loop = 0;
  if (s < 0 || setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) ||
      setsockopt(s, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops) ||
      setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &scope, sizeof scope) ||
      setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop) ||
      bind(s, (struct sockaddr *)&src, sizeof src) ||
      sendto(s, msg, len, 0, (struct sockaddr *)&dst, sizeof dst) != (ssize_t)len) {
    perror("icmp6send");
    return 1;
  }
  close(s);
  return 0;
}
