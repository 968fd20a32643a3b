/*
 * many_server: a small epoll server for TestManyConnections.
 *
 *   many_server PORT
 *
 * Listens on 0.0.0.0:PORT (backlog 4096), non-blocking, with one level-triggered
 * epoll set. It accepts every connection and keeps it open until the client closes
 * it; each request line "LINE\n" (at most 100 bytes) is answered "a LINE\n" at once.
 * When accept fails with EMFILE or ENFILE it says so on stderr (once), stops
 * accepting for 50 ms and tries again.
 *
 * Prints "listening PORT" once it listens; on SIGUSR1 (and at exit on SIGTERM or
 * SIGINT) a status line:
 *   status conns N accepted N answered N closed N emfile N maxfd N
 * conns: connections open now; accepted: in all; answered: requests answered;
 * emfile: accepts that failed with EMFILE/ENFILE; maxfd: the highest fd number seen.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 100

struct conn {
	int open;
	int inlen, outlen, outoff;
	int waiting_out; /* registered for EPOLLOUT instead of EPOLLIN */
	char in[LINE_MAX_LEN + 1];
	char out[4 * (LINE_MAX_LEN + 4)];
};

static struct conn *conns;
static long nmax;
static long open_now, accepted, answered, closed_n, emfile, maxfd;
static int ep, lfd;
static volatile sig_atomic_t want_status, want_exit;

static void on_usr1(int sig) { (void)sig; want_status = 1; }
static void on_term(int sig) { (void)sig; want_exit = 1; }

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void status(void)
{
	printf("status conns %ld accepted %ld answered %ld closed %ld emfile %ld maxfd %ld\n",
	       open_now, accepted, answered, closed_n, emfile, maxfd);
	fflush(stdout);
}

static void drop(int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	conns[fd].open = 0;
	open_now--;
	closed_n++;
}

/* flush writes what c has to send; 0, or -1 when the connection failed. */
static int flush(int fd)
{
	struct conn *c = &conns[fd];
	while (c->outoff < c->outlen) {
		ssize_t r = send(fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			break;
		if (r <= 0)
			return -1;
		c->outoff += r;
	}
	/* The rest when it can go; meanwhile read no more requests. */
	int pending = c->outoff < c->outlen;
	if (!pending)
		c->outoff = c->outlen = 0;
	if (pending != c->waiting_out) {
		struct epoll_event ev = { .events = pending ? EPOLLOUT : EPOLLIN, .data.fd = fd };
		epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
		c->waiting_out = pending;
	}
	return 0;
}

static void readable(int fd)
{
	struct conn *c = &conns[fd];
	if (c->outlen > 0)
		return; /* answers still pending: read more once they went */
	char buf[512];
	ssize_t r = recv(fd, buf, sizeof buf, 0);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		drop(fd);
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] != '\n') {
			if (c->inlen >= LINE_MAX_LEN) {
				fprintf(stderr, "many_server: fd %d: request line longer than %d bytes\n", fd, LINE_MAX_LEN);
				drop(fd);
				return;
			}
			c->in[c->inlen++] = buf[i];
			continue;
		}
		if (c->outlen + c->inlen + 4 > (int)sizeof c->out) {
			fprintf(stderr, "many_server: fd %d: too many requests at once\n", fd);
			drop(fd);
			return;
		}
		c->outlen += snprintf(c->out + c->outlen, sizeof c->out - c->outlen, "a %.*s\n", c->inlen, c->in);
		c->inlen = 0;
		answered++;
	}
	if (c->outlen > 0 && flush(fd) < 0)
		drop(fd);
}

static void accept_all(long *paused_until)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				if (emfile++ == 0)
					fprintf(stderr, "many_server: accept: %s with %ld connections open (fd limit reached)\n",
					        strerror(errno), open_now);
				epoll_ctl(ep, EPOLL_CTL_DEL, lfd, NULL);
				*paused_until = now_ms() + 50;
				return;
			}
			fprintf(stderr, "many_server: accept: %s\n", strerror(errno));
			return;
		}
		if (fd >= nmax) {
			fprintf(stderr, "many_server: fd %d above the limit %ld\n", fd, nmax);
			close(fd);
			continue;
		}
		if (fd > maxfd)
			maxfd = fd;
		memset(&conns[fd], 0, sizeof conns[fd]);
		conns[fd].open = 1;
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			fprintf(stderr, "many_server: epoll_ctl ADD %d: %s\n", fd, strerror(errno));
			close(fd);
			continue;
		}
		accepted++;
		open_now++;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: many_server PORT\n");
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		perror("getrlimit");
		return 1;
	}
	nmax = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1 << 20 ? 1 << 20 : (long)rl.rlim_cur;
	conns = calloc(nmax, sizeof *conns);
	if (!conns) {
		perror("calloc");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
		perror("many_server: listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.fd = lfd };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
		perror("many_server: epoll");
		return 1;
	}
	printf("listening %s (RLIMIT_NOFILE %ld)\n", argv[1], nmax);
	fflush(stdout);

	long paused_until = 0;
	struct epoll_event evs[256];
	while (!want_exit) {
		if (want_status) {
			want_status = 0;
			status();
		}
		int timeout = -1;
		if (paused_until) {
			long left = paused_until - now_ms();
			if (left <= 0) {
				paused_until = 0;
				epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
			} else {
				timeout = (int)left;
			}
		}
		int n = epoll_wait(ep, evs, 256, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("many_server: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				accept_all(&paused_until);
				continue;
			}
			if (fd < 0 || fd >= nmax || !conns[fd].open)
				continue;
			if (evs[i].events & EPOLLOUT) {
				if (flush(fd) < 0) {
					drop(fd);
					continue;
				}
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				readable(fd);
		}
	}
	status();
	return 0;
}
