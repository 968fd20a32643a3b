/* epoll over a mix of kernel and accelerated fds.
 *
 * Go keeps the interest list of accelerated members (ustack_epoll_ctl). It also puts one "wake"
 * epoll fd into the application's epoll set, tagged USTACK_EPOLL_MAGIC, that becomes readable when
 * a member's eventfd is signalled, and, while a thread sleeps in this set, when frames wait on
 * the AF_XDP fd (then the sleeper drives the stack itself; at other times frames must not make
 * the set look readable, to an epoll set nesting it for one). epoll_wait asks Go for ready
 * members first, then sleeps in the real epoll_wait; a wake-up by the magic entry alone means
 * "ask Go again". */
#include "intercept.h"
#include <pthread.h>

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	USTACK_ENSURE();
	if (!ustack_sock(fd) && !((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && ustack_take_if_cand(fd, 1))) {
		if (op == EPOLL_CTL_ADD && ustack_kind(fd) == USTACK_KIND_EPOLL)
			ustack_epoll_nested(fd);
		return ustack_real.epoll_ctl(epfd, op, fd, ev);
	}
	if (ustack_forked_child) {
		if (ustack_child_move(fd) < 0) {
			errno = EBADFD;
			return -1;
		}
		return ustack_real.epoll_ctl(epfd, op, fd, ev);
	}
	long r = ustack_epoll_ctl(epfd, op, fd, ev);
	if (r == USTACK_PASS) /* handed to the kernel since we looked */
		return ustack_real.epoll_ctl(epfd, op, fd, ev);
	return ustack_ret(r);
}

/* drop_magic removes the wake entry and the shadows' entries from evs[0:n] and returns how many
 * remain; *woken is set when one was there. */
static int drop_magic(struct epoll_event *evs, int n, int *woken)
{
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == USTACK_EPOLL_MAGIC) {
			*woken = 1;
			continue;
		}
		if ((evs[i].data.u64 & USTACK_SHADOW_MASK) == USTACK_SHADOW_TAG) {
			ustack_shadow_seen((int)(evs[i].data.u64 & ~USTACK_SHADOW_MASK));
			*woken = 1;
			continue;
		}
		evs[k++] = evs[i];
	}
	return k;
}

/* xsk_watch counts the threads asleep in epfd and keeps the AF_XDP fd in its wake epoll while
 * they sleep, so frames wake one of them to drive the stack. A set nobody else watches keeps the
 * AF_XDP fd from its first sleep on: frames arriving while nobody sleeps make it look readable
 * only to epoll_wait, which then drives the stack, and a sleep costs no epoll_ctl. A nested set
 * (ustack_epoll_nested) must not look readable for frames: the fd is there only while somebody
 * sleeps in it. */
static pthread_mutex_t xsk_mu = PTHREAD_MUTEX_INITIALIZER;

static void xsk_watch(int epfd, int on)
{
	struct ustack_fd *e = &ustack_fds[epfd];
	int xsk = ustack_xsk_fd;
	if (xsk < 0 || e->extra_fd < 0)
		return;
	if (on) {
		__atomic_add_fetch(&e->sleepers, 1, __ATOMIC_ACQ_REL);
		if (__atomic_load_n(&e->xsk_in, __ATOMIC_ACQUIRE))
			return;
		pthread_mutex_lock(&xsk_mu);
		if (!e->xsk_in) {
			struct epoll_event ev = { .events = EPOLLIN };
			int r = ustack_real.epoll_ctl(e->extra_fd, EPOLL_CTL_ADD, xsk, &ev);
			if (r == 0 || errno == EEXIST)
				__atomic_store_n(&e->xsk_in, 1, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&xsk_mu);
		return;
	}
	if (__atomic_sub_fetch(&e->sleepers, 1, __ATOMIC_ACQ_REL) > 0 || !__atomic_load_n(&e->nested, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&xsk_mu);
	if (e->xsk_in && __atomic_load_n(&e->sleepers, __ATOMIC_ACQUIRE) == 0) {
		ustack_real.epoll_ctl(e->extra_fd, EPOLL_CTL_DEL, xsk, NULL);
		__atomic_store_n(&e->xsk_in, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&xsk_mu);
}

/* ustack_epoll_nested marks epfd as watched by another set or by poll/select: from now on the
 * AF_XDP fd is in its wake epoll only while a thread sleeps in it. */
void ustack_epoll_nested(int epfd)
{
	struct ustack_fd *e = &ustack_fds[epfd];
	if (__atomic_load_n(&e->nested, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&xsk_mu);
	__atomic_store_n(&e->nested, 1, __ATOMIC_RELEASE);
	int xsk = ustack_xsk_fd;
	if (e->xsk_in && xsk >= 0 && e->extra_fd >= 0 && __atomic_load_n(&e->sleepers, __ATOMIC_ACQUIRE) == 0) {
		ustack_real.epoll_ctl(e->extra_fd, EPOLL_CTL_DEL, xsk, NULL);
		__atomic_store_n(&e->xsk_in, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&xsk_mu);
}

static int epoll_wait_impl(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	if (max <= 0) {
		errno = EINVAL;
		return -1;
	}
	long deadline = timeout >= 0 ? ustack_now_ms() + timeout : -1;
	long spin_end = 0;
	int result;
	/* A wait that may sleep skips its first look into Go when the set is quiet: no member to
	 * report, and the AF_XDP fd in its wake epoll, so the real wait returns the wake entry at once
	 * if frames wait or a member gets news (the set's eventfd). An idle server's periodic wake-ups
	 * then never enter the Go runtime. */
	struct ustack_fd *e = &ustack_fds[epfd];
	int quiet = timeout != 0 && ustack_spin_us <= 0 && __atomic_load_n(&e->xsk_in, __ATOMIC_ACQUIRE) &&
		    !__atomic_load_n(&e->ready, __ATOMIC_ACQUIRE);
	for (;;) {
		int n = 0;
		if (quiet) {
			quiet = 0;
		} else if (!ustack_forked_child) {
			long r = ustack_epoll_check(epfd, evs, max);
			if (r < 0) {
				result = ustack_ret(r);
				break;
			}
			n = (int)r;
		}
		int wait;
		if (n > 0 || (timeout != 0 && ustack_spinning(&spin_end))) {
			wait = 0;
		} else if (deadline >= 0) {
			long left = deadline - ustack_now_ms();
			wait = left > 0 ? (int)left : 0;
		} else {
			wait = -1;
		}
		int m = 0;
		if (n < max) {
			if (n == 0)
				ustack_kick(); /* no events to hand back: what the check queued goes now */
			/* the application's set holds the wake epoll, which holds the AF_XDP fd */
			if (wait != 0) {
				ustack_sleep_begin();
				xsk_watch(epfd, 1);
			}
			m = mask ? ustack_real.epoll_pwait(epfd, evs + n, max - n, wait, mask)
				 : ustack_real.epoll_wait(epfd, evs + n, max - n, wait);
			if (wait != 0) {
				int saved = errno;
				xsk_watch(epfd, 0);
				ustack_sleep_end();
				errno = saved;
			}
		}
		if (m < 0) {
			result = n > 0 ? n : -1;
			break;
		}
		int woken = 0;
		m = drop_magic(evs + n, m, &woken);
		if (n + m > 0) {
			result = n + m;
			break;
		}
		if (deadline >= 0 && ustack_now_ms() >= deadline) {
			result = 0;
			break;
		}
	}
	int saved = errno;
	ustack_spin_done(spin_end);
	if (result > 0)
		ustack_batch_begin();
	else
		ustack_batch_end();
	errno = saved;
	return result;
}

/* foreign_events looks at the r events a real wait returned on an epoll fd we do not know. A dup
 * of a set's epoll fd made before the set existed reports the set's wake entry: the entry is not
 * the program's, and the fd is ours from now on. Returns the program's events. */
static int foreign_events(int epfd, struct epoll_event *evs, int r)
{
	if (r <= 0 || ustack_xsk_fd < 0 || !USTACK_GO_OK())
		return r;
	int woken = 0;
	int k = drop_magic(evs, r, &woken);
	if (woken)
		ustack_epoll_adopt(epfd);
	return k;
}

/* LOOK_AGAIN: after foreign_events, whether the wait must go on as an accelerated set's */
#define LOOK_AGAIN(epfd, r) ((r) == 0 && ustack_kind(epfd) == USTACK_KIND_EPOLL)

int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	USTACK_ENSURE();
	ustack_batch_end();
	if (ustack_kind(epfd) != USTACK_KIND_EPOLL) {
		int r = foreign_events(epfd, evs, ustack_real.epoll_wait(epfd, evs, max, timeout));
		if (!LOOK_AGAIN(epfd, r))
			return r;
	}
	return epoll_wait_impl(epfd, evs, max, timeout, NULL);
}

int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	USTACK_ENSURE();
	ustack_batch_end();
	if (ustack_kind(epfd) != USTACK_KIND_EPOLL) {
		int r = foreign_events(epfd, evs, ustack_real.epoll_pwait(epfd, evs, max, timeout, mask));
		if (!LOOK_AGAIN(epfd, r))
			return r;
	}
	return epoll_wait_impl(epfd, evs, max, timeout, mask);
}

int epoll_pwait2(int epfd, struct epoll_event *evs, int max, const struct timespec *ts, const sigset_t *mask)
{
	USTACK_ENSURE();
	ustack_batch_end();
	if (ustack_kind(epfd) != USTACK_KIND_EPOLL) {
		if (!ustack_real.epoll_pwait2) {
			errno = ENOSYS;
			return -1;
		}
		int r = foreign_events(epfd, evs, ustack_real.epoll_pwait2(epfd, evs, max, ts, mask));
		if (!LOOK_AGAIN(epfd, r))
			return r;
	}
	/* the accelerated part waits in milliseconds (rounded up) */
	int ms = ts ? (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000) : -1;
	return epoll_wait_impl(epfd, evs, max, ms, mask);
}
