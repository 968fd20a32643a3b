/*
 * mcast_recv: NSOCK UDP sockets of one process on GROUP:PORT, each joined to the group, each
 * checking that the datagrams (a 4-byte big-endian sequence number, then padding) arrive all,
 * in order, none twice (tests/mcast_test.go).
 *
 *   mcast_recv GROUP PORT IFNAME IFADDR NSOCK COUNT
 *
 * The sockets are bound to INADDR_ANY:PORT with SO_REUSEADDR and a 4 MiB SO_RCVBUFFORCE, except the last of three or more,
 * bound to GROUP:PORT. They join in the three ways of ip(7): struct ip_mreq with the interface's
 * address, struct ip_mreqn with its index, struct ip_mreqn with its address. An IPv6 GROUP (it has
 * a ':') makes AF_INET6 sockets that join with IPV6_JOIN_GROUP (struct ipv6_mreq, the interface's
 * index; IFADDR is not used) and leave with IPV6_LEAVE_GROUP (ipv6(7)). The program prints
 * "joined" once all are members, reads until every socket has COUNT datagrams (or none came for
 * 5 s), prints one line per socket ("sock I got N in order" or what went wrong), leaves the
 * group on every socket with IP_DROP_MEMBERSHIP, prints "left", stays 2 s (the test looks at
 * the interface's groups meanwhile) and exits 0 if every socket got every datagram in order.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXSOCK 16

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s GROUP PORT IFNAME IFADDR NSOCK COUNT\n", argv[0]);
		return 2;
	}
	struct in_addr group, ifaddr;
	struct in6_addr group6;
	int v6 = strchr(argv[1], ':') != NULL;
	if (v6 ? inet_pton(AF_INET6, argv[1], &group6) != 1 :
		 inet_pton(AF_INET, argv[1], &group) != 1 || inet_pton(AF_INET, argv[4], &ifaddr) != 1) {
		fprintf(stderr, "bad address\n");
		return 2;
	}
	int port = atoi(argv[2]), n = atoi(argv[5]);
	long count = atol(argv[6]);
	unsigned ifindex = if_nametoindex(argv[3]);
	if (n < 1 || n > MAXSOCK || ifindex == 0) {
		fprintf(stderr, "bad socket count or interface\n");
		return 2;
	}
	int fds[MAXSOCK];
	long next[MAXSOCK], got[MAXSOCK], bad[MAXSOCK];
	int ep = epoll_create1(0);
	for (int i = 0; i < n; i++) {
		int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0), one = 1;
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
			perror("socket");
			return 1;
		}
		/* as market-data receivers do: room for bursts while the process is off the CPU (the
		 * kernel's socket, where the datagrams take the kernel path) */
		int rcvbuf = 4 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
			perror("SO_RCVBUFFORCE");
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
		struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
		if (n >= 3 && i == n - 1) {
			sa.sin_addr = group; /* a receiver bound to the group's address */
			sa6.sin6_addr = group6;
		}
		if (v6 ? bind(fd, (struct sockaddr *)&sa6, sizeof sa6) : bind(fd, (struct sockaddr *)&sa, sizeof sa)) {
			perror("bind");
			return 1;
		}
		int r;
		if (v6) {
			struct ipv6_mreq m = {.ipv6mr_multiaddr = group6, .ipv6mr_interface = ifindex};
			r = setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m);
		} else
			switch (i % 3) {
			case 0: {
				struct ip_mreq m = {.imr_multiaddr = group, .imr_interface = ifaddr};
				r = setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m);
				break;
			}
			case 1: {
				struct ip_mreqn m = {.imr_multiaddr = group, .imr_ifindex = (int)ifindex};
				r = setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m);
				break;
			}
			default: {
				struct ip_mreqn m = {.imr_multiaddr = group, .imr_address = ifaddr};
				r = setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m);
			}
			}
		if (r < 0) {
			perror("join");
			return 1;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			perror("epoll_ctl");
			return 1;
		}
		fds[i] = fd;
		next[i] = got[i] = bad[i] = 0;
	}
	printf("joined\n");
	fflush(stdout);
	int done = 0;
	while (done < n) {
		struct epoll_event evs[MAXSOCK];
		int k = epoll_wait(ep, evs, MAXSOCK, 5000);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break; /* 5 s without a datagram: something is missing */
		for (int e = 0; e < k; e++) {
			int i = evs[e].data.u32;
			for (;;) {
				unsigned char buf[2048];
				ssize_t len = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
				if (len < 0)
					break;
				if (len < 4) {
					bad[i]++;
					continue;
				}
				long seq = (long)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3];
				if (seq != next[i] && bad[i]++ < 5)
					fprintf(stderr, "sock %d: got %ld, want %ld\n", i, seq, next[i]);
				next[i] = seq + 1;
				if (++got[i] == count)
					done++;
			}
		}
	}
	int ok = 1;
	for (int i = 0; i < n; i++) {
		if (got[i] == count && bad[i] == 0)
			printf("sock %d got %ld in order\n", i, got[i]);
		else {
			printf("sock %d got %ld of %ld, %ld out of order or short\n", i, got[i], count, bad[i]);
			ok = 0;
		}
	}
	for (int i = 0; i < n; i++) {
		struct ip_mreqn m = {.imr_multiaddr = group, .imr_ifindex = (int)ifindex};
		struct ipv6_mreq m6 = {.ipv6mr_multiaddr = group6, .ipv6mr_interface = ifindex};
		if (v6 ? setsockopt(fds[i], IPPROTO_IPV6, IPV6_LEAVE_GROUP, &m6, sizeof m6) :
			 setsockopt(fds[i], IPPROTO_IP, IP_DROP_MEMBERSHIP, &m, sizeof m)) {
			perror("leave");
			ok = 0;
		}
	}
	printf("left\n");
	fflush(stdout);
	sleep(2);
	return ok ? 0 : 1;
}
