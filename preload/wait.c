/* Waiting for accelerated sockets without a kernel object per socket.
 *
 * A thread that must sleep takes a slot of its own in ustack_waiters (once, with one eventfd that
 * it keeps until it exits), writes there what it waits on, counts itself in the fd's rx_waiters
 * or tx_waiters, and sleeps on its eventfd (plus the shadow and the AF_XDP fd). Go bumps the fd's
 * seq at each change of the socket's readiness and, when a registered waiter can now go on,
 * writes the eventfds of the slots waiting on that fd (ustack_wake_fd).
 *
 * No wake-up is lost: the waiter reads seq before the Go call that answered "wait", registers,
 * then reads seq again and sleeps only if it did not move; Go bumps seq, then reads the waiter
 * counts. With sequentially consistent atomics on both sides either the waiter sees the new seq
 * or Go sees the waiter. */
#include "intercept.h"
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct ustack_waiter ustack_waiters[USTACK_MAX_WAITERS];
static int waiters_hi; /* slots [0, waiters_hi) may be in use */
static pthread_key_t waiter_key;
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;
static __thread struct ustack_waiter *self_waiter __attribute__((tls_model("initial-exec")));

/* a thread that exits gives its slot back */
static void waiter_exit(void *p)
{
	struct ustack_waiter *w = p;
	int efd = w->efd;
	w->efd = -1;
	__atomic_store_n(&w->fd, -1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&w->used, 0, __ATOMIC_RELEASE);
	if (efd >= 0)
		ustack_real.close(efd);
}

static void waiter_key_create(void) { pthread_key_create(&waiter_key, waiter_exit); }

/* ustack_self_waiter is the calling thread's slot, taken on first use; NULL when all are taken
 * (the caller then sleeps in short slices instead). */
struct ustack_waiter *ustack_self_waiter(void)
{
	if (self_waiter)
		return self_waiter;
	pthread_once(&waiter_once, waiter_key_create);
	int saved = errno;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	errno = saved;
	if (efd < 0)
		return NULL;
	for (int i = 0; i < USTACK_MAX_WAITERS; i++) {
		struct ustack_waiter *w = &ustack_waiters[i];
		int32_t free_ = 0;
		if (!__atomic_compare_exchange_n(&w->used, &free_, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			continue;
		w->efd = efd;
		__atomic_store_n(&w->fd, -1, __ATOMIC_SEQ_CST);
		int hi = __atomic_load_n(&waiters_hi, __ATOMIC_ACQUIRE);
		while (hi < i + 1 && !__atomic_compare_exchange_n(&waiters_hi, &hi, i + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			;
		pthread_setspecific(waiter_key, w);
		self_waiter = w;
		return w;
	}
	ustack_real.close(efd);
	return NULL;
}

/* ustack_wake_fd (called by Go under the stack lock) wakes the threads waiting on fd. */
void ustack_wake_fd(int fd)
{
	int hi = __atomic_load_n(&waiters_hi, __ATOMIC_ACQUIRE);
	for (int i = 0; i < hi; i++) {
		struct ustack_waiter *w = &ustack_waiters[i];
		int f = __atomic_load_n(&w->fd, __ATOMIC_SEQ_CST);
		if (f == fd || f == USTACK_WAIT_ANY) {
			uint64_t one = 1;
			if (ustack_real.write(w->efd, &one, sizeof one) < 0) {
				/* EAGAIN: the counter is full, the thread wakes anyway */
			}
		}
	}
}

/* ustack_waiter_done ends a registration: the slot no longer waits, and a wake-up that came
 * meanwhile is consumed when woken says the wait saw one (else the read is a system call for
 * nothing, one per sleep; a wake-up written after the wait returned makes the next wait look
 * once more for nothing, which the callers' loops allow). */
void ustack_waiter_done(struct ustack_waiter *w, int woken)
{
	__atomic_store_n(&w->fd, -1, __ATOMIC_SEQ_CST);
	if (!woken)
		return;
	int saved = errno; /* a call that succeeds leaves errno as it was, as the kernel's do */
	uint64_t v;
	if (ustack_real.read(w->efd, &v, sizeof v) < 0) {
		/* EAGAIN: nobody woke us */
	}
	errno = saved;
}

/* ustack_wait blocks the calling thread until fd may be ready for events (POLLIN or POLLOUT), the
 * stack has frames to process, a signal arrives (-EINTR) or timeout_ms passes (-EAGAIN; -1 = none).
 * seq is fd's wake-up sequence read before the call into Go that answered "wait". Returns 0 when
 * the caller should call into Go again. */
int ustack_wait(int fd, int events, int timeout_ms, const sigset_t *mask, uint32_t seq)
{
	ustack_kick(); /* nothing queued may wait for the end of a batch while we sleep */
	struct pollfd p[3];
	int n = 0;
	struct ustack_fd *e = &ustack_fds[fd];
	int32_t *waiters = (events & POLLIN) ? &e->rx_waiters : &e->tx_waiters;
	struct ustack_waiter *w = ustack_self_waiter();
	if (w) {
		__atomic_store_n(&w->fd, fd, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(waiters, 1, __ATOMIC_SEQ_CST);
		if (ustack_seq(fd) != seq) {
			__atomic_sub_fetch(waiters, 1, __ATOMIC_SEQ_CST);
			ustack_waiter_done(w, 1);
			return 0; /* it changed since Go looked: look again */
		}
		p[n].fd = w->efd; p[n].events = POLLIN; n++;
	} else if (timeout_ms < 0 || timeout_ms > 1) {
		timeout_ms = 1; /* no slot left: look again every millisecond */
	}
	int shadow = -1;
	if ((events & POLLIN) && e->extra_fd >= 0) {
		shadow = n;
		p[n].fd = e->extra_fd; p[n].events = POLLIN; n++;
	}
	int xsk = ustack_xsk_fd;
	if (xsk >= 0) {
		p[n].fd = xsk; p[n].events = POLLIN; n++;
		ustack_sleep_begin();
	}
	int r;
	if (mask) {
		struct timespec ts, *tsp = NULL;
		if (timeout_ms >= 0) { ts.tv_sec = timeout_ms / 1000; ts.tv_nsec = (timeout_ms % 1000) * 1000000L; tsp = &ts; }
		r = ustack_real.ppoll(p, n, tsp, mask);
	} else {
		r = ustack_real.poll(p, n, timeout_ms);
	}
	int saved = errno;
	if (r > 0 && shadow >= 0 && p[shadow].revents)
		ustack_shadow_seen(fd);
	if (xsk >= 0)
		ustack_sleep_end();
	if (w) {
		__atomic_sub_fetch(waiters, 1, __ATOMIC_SEQ_CST);
		ustack_waiter_done(w, r > 0 && (p[0].revents & POLLIN));
	}
	if (r < 0)
		return -saved;
	if (r == 0 && w)
		return -EAGAIN;
	return 0;
}
