/*
 * tcpinfo_stop: what a program sees of its connection, to hold against what onloadctl sockets
 * shows of it while the program is stopped.
 *
 *   tcpinfo_stop ADDR PORT BYTES   connect to an echo server, send BYTES in 64 KiB blocks and read
 *                                  each back, wait until everything sent is acknowledged and the
 *                                  delayed ACKs are out, then print one line of the connection's
 *                                  getsockopt(TCP_INFO), wait half a second and stop itself
 *                                  (SIGSTOP); once continued, close and print "tcpinfo_stop ok"
 *
 * The line: "tcpinfo lport=P state=S cwnd=C ssthresh=T rtt=R rttvar=V rto=O bytes_acked=A
 * bytes_received=B segs_in=I segs_out=U total_retrans=X". alarm() bounds the run.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* the whole struct tcp_info: glibc's stops at tcpi_total_retrans */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: tcpinfo_stop ADDR PORT BYTES\n");
		return 2;
	}
	alarm(60);
	long long total = atoll(argv[3]);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("connect");
	static char out[65536], in[65536];
	for (size_t i = 0; i < sizeof out; i++)
		out[i] = (char)(i * 7);
	for (long long done = 0; done < total;) {
		size_t n = total - done < (long long)sizeof out ? (size_t)(total - done) : sizeof out;
		for (size_t w = 0; w < n;) {
			ssize_t r = write(fd, out + w, n - w);
			if (r <= 0)
				die("write");
			w += r;
		}
		for (size_t got = 0; got < n;) {
			ssize_t r = read(fd, in + got, n - got);
			if (r <= 0)
				die("read");
			got += r;
		}
		if (memcmp(in, out, n) != 0) {
			printf("FAIL echo differs\n");
			return 1;
		}
		done += n;
	}
	for (int i = 0; i < 1000; i++) {
		int q = 0;
		if (ioctl(fd, SIOCOUTQ, &q) < 0)
			die("SIOCOUTQ");
		if (q == 0)
			break;
		usleep(10000);
	}
	usleep(300000); /* delayed ACKs (40 ms) go out before the look */
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		die("TCP_INFO");
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
		die("getsockname");
	printf("tcpinfo lport=%u state=%u cwnd=%u ssthresh=%u rtt=%u rttvar=%u rto=%u bytes_acked=%llu "
	       "bytes_received=%llu segs_in=%u segs_out=%u total_retrans=%u\n",
	       ntohs(me.sin_port), ti.tcpi_state, ti.tcpi_snd_cwnd, ti.tcpi_snd_ssthresh, ti.tcpi_rtt,
	       ti.tcpi_rttvar, ti.tcpi_rto, (unsigned long long)ti.tcpi_bytes_acked,
	       (unsigned long long)ti.tcpi_bytes_received, ti.tcpi_segs_in, ti.tcpi_segs_out,
	       ti.tcpi_total_retrans);
	fflush(stdout);
	usleep(500000);
	raise(SIGSTOP);
	close(fd);
	printf("tcpinfo_stop ok\n");
	return 0;
}
