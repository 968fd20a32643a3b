/* poll, ppoll and select over a mix of kernel and accelerated fds.
 *
 * Go answers the readiness of accelerated fds (ustack_poll_check). When nothing is ready the thread
 * registers as a waiter on each accelerated fd (wait.c) and sleeps in one real poll over the kernel
 * fds, its own wake-up eventfd, the shadows of accelerated listeners and UDP sockets, and the
 * AF_XDP fd (so a sleeping thread wakes to drive the stack when frames arrive). */
#include "intercept.h"
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define STACK_ENTRIES 64

/* ours_skipped counts the entries of fds that are all accelerated (the real poll would skip
 * them all): spinning then needs no system call. */
static nfds_t ours_skipped(const struct pollfd *fds, nfds_t nfds)
{
	for (nfds_t i = 0; i < nfds; i++)
		if (fds[i].fd >= 0 && !ustack_sock(fds[i].fd))
			return (nfds_t)-1;
	return nfds;
}

/* register_waiter counts w in e's waiters for the directions of events (delta 1 or -1). */
static void register_waiter(struct ustack_waiter *w, struct ustack_fd *e, short events, int delta)
{
	__atomic_store_n(&w->fd, USTACK_WAIT_ANY, __ATOMIC_SEQ_CST);
	if (events & (POLLIN | POLLRDNORM))
		__atomic_add_fetch(&e->rx_waiters, delta, __ATOMIC_SEQ_CST);
	if (events & (POLLOUT | POLLWRNORM))
		__atomic_add_fetch(&e->tx_waiters, delta, __ATOMIC_SEQ_CST);
}

static void unregister_waiter(struct ustack_waiter *w, const struct pollfd *fds, nfds_t nfds, int woken)
{
	if (!w)
		return;
	for (nfds_t i = 0; i < nfds; i++)
		if (ustack_sock(fds[i].fd))
			register_waiter(w, &ustack_fds[fds[i].fd], fds[i].events, -1);
	ustack_waiter_done(w, woken);
}

int ustack_poll_impl(struct pollfd *fds, nfds_t nfds, int timeout_ms, const sigset_t *mask)
{
	if (ustack_forked_child) /* what cannot move stays ours: POLLNVAL below */
		for (nfds_t i = 0; i < nfds; i++)
			ustack_child_move(fds[i].fd);
	nfds_t ours = 0;
	for (nfds_t i = 0; i < nfds; i++) {
		int k = ustack_kind(fds[i].fd);
		if (k == USTACK_KIND_TCP || k == USTACK_KIND_UDP)
			ours++;
		else if (k == USTACK_KIND_EPOLL)
			ustack_epoll_nested(fds[i].fd);
	}
	nfds_t cap = nfds + ours + 2;
	struct pollfd onstack[STACK_ENTRIES], *real = onstack;
	uint32_t seqs_onstack[STACK_ENTRIES], *seqs = seqs_onstack;
	if (cap > STACK_ENTRIES) {
		real = malloc(cap * sizeof *real);
		seqs = malloc(nfds * sizeof *seqs);
		if (!real || !seqs) {
			free(real);
			free(seqs);
			errno = ENOMEM;
			return -1;
		}
	}
	struct ustack_waiter *w = NULL; /* registered on every accelerated fd while not NULL */
	long deadline = timeout_ms >= 0 ? ustack_now_ms() + timeout_ms : -1;
	long spin_end = 0;
	int result;
	for (;;) {
		long ready = 0;
		for (nfds_t i = 0; i < nfds; i++)
			if (ustack_sock(fds[i].fd))
				seqs[i] = ustack_seq(fds[i].fd);
		if (ustack_forked_child) {
			for (nfds_t i = 0; i < nfds; i++)
				if (ustack_sock(fds[i].fd)) {
					fds[i].revents = POLLNVAL;
					ready++;
				}
		} else {
			ready = ustack_poll_check(fds, (int)nfds);
			if (ready < 0) {
				result = ustack_ret(ready);
				break;
			}
		}
		nfds_t n = 0;
		for (nfds_t i = 0; i < nfds; i++) {
			real[n] = fds[i];
			real[n].revents = 0;
			if (ustack_sock(fds[i].fd))
				real[n].fd = -1; /* poll skips negative fds */
			n++;
		}
		int wait = 0;
		nfds_t extra0 = 0; /* real[extra0...]: the shadows of the accelerated fds, in their order */
		int spin = ready == 0 && timeout_ms != 0 && ustack_spinning(&spin_end);
		if (ready == 0 && !spin) {
			if (deadline >= 0) {
				long left = deadline - ustack_now_ms();
				wait = left > 0 ? (int)left : 0;
			} else {
				wait = -1;
			}
			if (!ustack_forked_child && ours > 0) {
				w = ustack_self_waiter();
				if (w)
					real[n++] = (struct pollfd){ .fd = w->efd, .events = POLLIN };
				else if (wait < 0 || wait > 1)
					wait = 1; /* no slot left: look again every millisecond */
			}
			extra0 = n;
			int moved = 0;
			for (nfds_t i = 0; i < nfds; i++) {
				if (!ustack_sock(fds[i].fd))
					continue;
				struct ustack_fd *e = &ustack_fds[fds[i].fd];
				if (w)
					register_waiter(w, e, fds[i].events, 1);
				if (ustack_seq(fds[i].fd) != seqs[i])
					moved = 1;
				if ((fds[i].events & (POLLIN | POLLRDNORM)) && e->extra_fd >= 0)
					real[n++] = (struct pollfd){ .fd = e->extra_fd, .events = POLLIN };
			}
			if (moved) {
				/* a socket changed since Go looked: look again instead of sleeping */
				unregister_waiter(w, fds, nfds, 1);
				w = NULL;
				continue;
			}
			int xsk = ustack_xsk_fd;
			if (xsk >= 0 && n > nfds)
				real[n++] = (struct pollfd){ .fd = xsk, .events = POLLIN };
		}
		if (ready == 0)
			ustack_kick(); /* nothing to hand back: what the check queued goes now */
		int sleeping = wait != 0 && n > nfds;
		if (sleeping)
			ustack_sleep_begin();
		int r;
		if (spin && n == ours_skipped(fds, nfds)) {
			r = 0; /* only accelerated fds: nothing for the kernel to say */
		} else if (mask) {
			struct timespec ts, *tsp = NULL;
			if (wait >= 0) {
				ts.tv_sec = wait / 1000;
				ts.tv_nsec = (wait % 1000) * 1000000L;
				tsp = &ts;
			}
			r = ustack_real.ppoll(real, n, tsp, mask);
		} else {
			r = ustack_real.poll(real, n, wait);
		}
		if (sleeping || w) {
			int saved = errno;
			if (sleeping)
				ustack_sleep_end();
			/* the slot's eventfd is real[nfds], right after the program's entries */
			unregister_waiter(w, fds, nfds, r > 0 && (real[nfds].revents & POLLIN));
			w = NULL;
			errno = saved;
		}
		if (r < 0) {
			result = -1;
			break;
		}
		if (r > 0 && extra0 > 0) {
			nfds_t k = extra0;
			for (nfds_t i = 0; i < nfds; i++) {
				if (!ustack_sock(fds[i].fd) || !(fds[i].events & (POLLIN | POLLRDNORM)) ||
				    ustack_fds[fds[i].fd].extra_fd < 0)
					continue;
				if (k < n && real[k].revents)
					ustack_shadow_seen(fds[i].fd);
				k++;
			}
		}
		int count = 0;
		for (nfds_t i = 0; i < nfds; i++) {
			if (!ustack_sock(fds[i].fd))
				fds[i].revents = real[i].revents;
			if (fds[i].revents)
				count++;
		}
		if (count > 0 || ready > 0) {
			result = count;
			break;
		}
		if (spin)
			continue;
		if (deadline >= 0 && ustack_now_ms() >= deadline) {
			result = 0;
			break;
		}
		/* only wake-up fds fired: look at the accelerated fds again */
	}
	int saved = errno;
	ustack_spin_done(spin_end);
	if (result > 0)
		ustack_batch_begin();
	else
		ustack_batch_end();
	if (real != onstack) {
		free(real);
		free(seqs);
	}
	errno = saved;
	return result;
}

/* has_ours reports whether fds holds a socket or epoll set of ours; a candidate is taken into
 * the stack first (waiting for it moves its data). */
static int has_ours(const struct pollfd *fds, nfds_t nfds)
{
	int ours = 0;
	for (nfds_t i = 0; i < nfds; i++) {
		int k = ustack_kind(fds[i].fd);
		if (k == USTACK_KIND_CAND)
			k = ustack_cand_take(fds[i].fd, 1) ? USTACK_KIND_TCP : USTACK_KIND_NONE;
		if (k != USTACK_KIND_NONE)
			ours = 1;
	}
	return ours;
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	USTACK_ENSURE();
	ustack_batch_end();
	if (!has_ours(fds, nfds))
		return ustack_real.poll(fds, nfds, timeout);
	return ustack_poll_impl(fds, nfds, timeout, NULL);
}

int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		abort();
	return poll(fds, nfds, timeout);
}

int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *ts, const sigset_t *mask)
{
	USTACK_ENSURE();
	ustack_batch_end();
	if (!has_ours(fds, nfds))
		return ustack_real.ppoll(fds, nfds, ts, mask);
	int ms = ts ? (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000) : -1;
	return ustack_poll_impl(fds, nfds, ms, mask);
}

static int select_impl(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int ms, const sigset_t *mask)
{
	int ours = 0, n = 0;
	if (nfds > FD_SETSIZE)
		nfds = FD_SETSIZE;
	for (int fd = 0; fd < nfds; fd++) {
		int want = (rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) || (ex && FD_ISSET(fd, ex));
		if (want) {
			n++;
			int kind = ustack_kind(fd);
			if (kind == USTACK_KIND_CAND)
				kind = ustack_cand_take(fd, 1) ? USTACK_KIND_TCP : USTACK_KIND_NONE;
			if (kind != USTACK_KIND_NONE)
				ours = 1;
		}
	}
	if (!ours)
		return -2; /* caller uses the real call */
	struct pollfd onstack[STACK_ENTRIES];
	struct pollfd *p = n <= STACK_ENTRIES ? onstack : malloc(n * sizeof *p);
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	int k = 0;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = 0;
		if (rd && FD_ISSET(fd, rd))
			ev |= POLLIN;
		if (wr && FD_ISSET(fd, wr))
			ev |= POLLOUT;
		if (ex && FD_ISSET(fd, ex))
			ev |= POLLPRI;
		if (ev)
			p[k++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	int r = ustack_poll_impl(p, k, ms, mask);
	if (r < 0) {
		int saved = errno;
		if (p != onstack)
			free(p);
		errno = saved;
		return -1;
	}
	for (int i = 0; i < k; i++)
		if (p[i].revents & POLLNVAL) {
			if (p != onstack)
				free(p);
			errno = EBADF;
			return -1;
		}
	if (rd)
		FD_ZERO(rd);
	if (wr)
		FD_ZERO(wr);
	if (ex)
		FD_ZERO(ex);
	int count = 0;
	for (int i = 0; i < k; i++) {
		short re = p[i].revents, ev = p[i].events;
		if (rd && (ev & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(p[i].fd, rd);
			count++;
		}
		if (wr && (ev & POLLOUT) && (re & (POLLOUT | POLLERR))) {
			FD_SET(p[i].fd, wr);
			count++;
		}
		if (ex && (ev & POLLPRI) && (re & POLLPRI)) {
			FD_SET(p[i].fd, ex);
			count++;
		}
	}
	if (p != onstack)
		free(p);
	return count;
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	USTACK_ENSURE();
	ustack_batch_end();
	int ms = tv ? (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000) : -1;
	long start = tv ? ustack_now_us() : 0;
	int r = select_impl(nfds, rd, wr, ex, ms, NULL);
	if (r == -2)
		return ustack_real.select(nfds, rd, wr, ex, tv);
	if (tv) {
		/* Linux writes back the time not slept */
		long left = tv->tv_sec * 1000000L + tv->tv_usec - (ustack_now_us() - start);
		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000L;
		tv->tv_usec = left % 1000000L;
	}
	return r;
}

int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts, const sigset_t *mask)
{
	USTACK_ENSURE();
	ustack_batch_end();
	int ms = ts ? (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000) : -1;
	int r = select_impl(nfds, rd, wr, ex, ms, mask);
	if (r == -2)
		return ustack_real.pselect(nfds, rd, wr, ex, ts, mask);
	return r;
}
