/* Candidates: sockets that could be accelerated, made while the Go part does not run here.
 *
 * A TCP or UDP socket made before the Go part runs stays a plain kernel socket, marked in the
 * table, until a call that moves data or connects (connect, accept, send, receive, a wait on it):
 * only then does the Go part start and take the socket into the stack, with what the kernel knows
 * of it (its bind, its options, whether it listens: shim Engine.Adopt). Until then setting it up
 * (bind, listen, options) costs nothing more than on the kernel.
 *
 * This is what lets a preforking server be accelerated: nginx's master makes its listeners and
 * forks its workers but never accepts; the workers, each a process of its own in which no Go part
 * ran, take the listener they inherited when they first wait on it, and share its port (shim
 * listenLocked). A socket that crossed a fork is taken only if it listens: a connection or a UDP
 * socket held by two processes could be carried by one stack only. Once the Go part runs, a new
 * socket is taken at once (socket() in sock.c), and so is a candidate at its next call. */
#include "intercept.h"
#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

static pthread_mutex_t take_mu = PTHREAD_MUTEX_INITIALIZER;

void ustack_cand_new(int fd, int type)
{
	struct ustack_fd *e = &ustack_fds[fd];
	e->cand_type = type;
	e->cand_pid = getpid();
	e->cand_gen = __atomic_load_n(&ustack_fork_gen, __ATOMIC_SEQ_CST);
	e->cand_dup = 0;
	__atomic_store_n(&e->kind, USTACK_KIND_CAND, __ATOMIC_RELEASE);
}

/* ustack_cand_drop: fd is a plain kernel socket for good (or closed). */
void ustack_cand_drop(int fd)
{
	if (fd >= 0 && fd < USTACK_FDMAX)
		__atomic_store_n(&ustack_fds[fd].kind, USTACK_KIND_NONE, __ATOMIC_RELEASE);
}

/* ustack_cand_dup: newfd, a kernel duplicate of the candidate oldfd, is the same candidate. Both
 * are marked: the one taken first finds the other by its SO_COOKIE (take_siblings). */
void ustack_cand_dup(int oldfd, int newfd)
{
	if (USTACK_GO_OK() && ustack_cand_take(oldfd, 0)) {
		ustack_dup(oldfd, newfd); /* the Go part runs: oldfd is taken, newfd shares it */
		return;
	}
	if (ustack_kind(oldfd) != USTACK_KIND_CAND)
		return;
	struct ustack_fd e = ustack_fds[oldfd];
	e.kind = USTACK_KIND_NONE;
	e.cand_dup = 1;
	ustack_fds[newfd] = e;
	ustack_fds[oldfd].cand_dup = 1;
	__atomic_store_n(&ustack_fds[newfd].kind, USTACK_KIND_CAND, __ATOMIC_RELEASE);
}

/* ustack_cand_setsockopt: a candidate that joins a multicast group with a source filter or through
 * the protocol-independent MCAST_JOIN_* stays with the kernel, as an accelerated socket would be
 * handed to it (shim Engine.Setsockopt). It answers 1 for IP_ADD_MEMBERSHIP and
 * IPV6_ADD_MEMBERSHIP: the candidate is taken now, starting the Go part, so that the shim sees the
 * membership (the kernel tells no one a socket's groups). */
int ustack_cand_setsockopt(int fd, int level, int name)
{
	if ((level == IPPROTO_IP && name == IP_ADD_MEMBERSHIP) || (level == IPPROTO_IPV6 && name == IPV6_ADD_MEMBERSHIP))
		return 1;
	if (USTACK_GO_OK())
		return 0; /* the interposer takes it first, the shim decides */
	if ((level == IPPROTO_IP && (name == IP_ADD_SOURCE_MEMBERSHIP || name == MCAST_JOIN_GROUP ||
				     name == MCAST_JOIN_SOURCE_GROUP)) ||
	    (level == IPPROTO_IPV6 && (name == MCAST_JOIN_GROUP || name == MCAST_JOIN_SOURCE_GROUP)))
		ustack_cand_drop(fd);
	return 0;
}

static uint64_t cookie_of(int fd)
{
	uint64_t c = 0;
	socklen_t len = sizeof c;
	if (ustack_real.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) < 0)
		return 0;
	return c;
}

/* take_siblings gives the other fds of fd's socket (dup'd while it was a candidate) what fd got. */
static void take_siblings(int fd)
{
	uint64_t cookie = cookie_of(fd);
	for (int o = 0; o < USTACK_FDMAX; o++) {
		if (o == fd || ustack_kind(o) != USTACK_KIND_CAND || !ustack_fds[o].cand_dup)
			continue;
		if (cookie == 0 || cookie_of(o) != cookie)
			continue;
		if (ustack_kind(fd) == USTACK_KIND_NONE)
			ustack_cand_drop(o);
		else
			ustack_dup(fd, o);
	}
}

/* ustack_cand_take takes the candidate fd into the stack, starting the Go part if load says so
 * and it does not run yet. It answers 1 when fd is an accelerated socket now, 0 when it stays a
 * kernel socket (for now, where load is 0 and the Go part does not run; else for good). */
int ustack_cand_take(int fd, int load)
{
	if (ustack_forked_child || ustack_go_off) {
		/* no Go part can run in this process: the kernel's for good */
		ustack_cand_drop(fd);
		return 0;
	}
	if (!__atomic_load_n(&ustack_go_ready, __ATOMIC_ACQUIRE) && !load)
		return 0;
	if (!ustack_load_go()) {
		ustack_cand_drop(fd);
		return 0;
	}
	pthread_mutex_lock(&take_mu);
	struct ustack_fd *e = &ustack_fds[fd];
	if (ustack_kind(fd) == USTACK_KIND_CAND) {
		int crossed = e->cand_pid != getpid() || e->cand_gen != __atomic_load_n(&ustack_fork_gen, __ATOMIC_SEQ_CST);
		int dup = e->cand_dup;
		ustack_go.adopt(fd, e->cand_type, crossed);
		if (ustack_kind(fd) == USTACK_KIND_CAND) /* the Go part declined without saying */
			ustack_cand_drop(fd);
		if (dup)
			take_siblings(fd);
	}
	pthread_mutex_unlock(&take_mu);
	return ustack_sock(fd);
}
