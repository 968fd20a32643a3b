/* The shape every interposer shares (after Onload's sockcall_intercept.c): make sure the real
 * symbols are known, go straight to libc when the fd is not ours, in a fork child have the socket moved to the
 * kernel and go to libc, call Go,
 * and fall back to libc when Go answers USTACK_PASS. */
#ifndef USTACK_INTERCEPT_H
#define USTACK_INTERCEPT_H
#include "ustack.h"
#include "goapi.h"
#include <errno.h>

#define USTACK_PROLOGUE_LOAD(fd, realcall, load)        \
	USTACK_ENSURE();                                \
	if (!ustack_sock_or_take(fd, load))             \
		return realcall;                        \
	if (ustack_forked_child) {                      \
		int _m = ustack_child_move(fd);         \
		if (_m < 0) {                           \
			errno = EBADFD;                 \
			return -1;                      \
		}                                       \
		return realcall;                        \
	}

/* USTACK_PROLOGUE: a call that sets a socket up (bind, listen, options, names) takes a candidate
 * into the stack only where the Go part runs already; USTACK_DATA_PROLOGUE: a call that moves
 * data or connects takes it, starting the Go part if need be (cand.c). */
#define USTACK_PROLOGUE(fd, realcall) USTACK_PROLOGUE_LOAD(fd, realcall, 0)
#define USTACK_DATA_PROLOGUE(fd, realcall) USTACK_PROLOGUE_LOAD(fd, realcall, 1)

/* USTACK_BLOCKING repeats CALL while Go answers USTACK_WAIT, first for USTACK_SPIN_US without
 * sleeping, then waiting in between for events on fd, for at most timeout_ms (0 = forever). The
 * fd's wake-up sequence is read before CALL: a change after CALL looked ends the wait at once. A signal ends the wait with -EINTR, unless its handler
 * has SA_RESTART and no timeout is set: then the call goes on, as signal(7) says of sockets. */
#define USTACK_BLOCKING(fd, events, timeout_ms, CALL) USTACK_BLOCKING_R(fd, events, timeout_ms, 1, CALL)

/* USTACK_BLOCKING_R is USTACK_BLOCKING where restartable says whether SA_RESTART may restart the
 * call (not once part of the data moved: the part is returned). */
#define USTACK_BLOCKING_R(fd, events, timeout_ms, restartable, CALL)                    \
	({                                                                              \
		long _r;                                                                \
		long _dl = (timeout_ms) > 0 ? ustack_now_ms() + (timeout_ms) : -1;       \
		long _spin_end = 0;                                                     \
		/* a handler that runs at any time during the call interrupts it: a    \
		 * wait that woke for another reason must not forget it */              \
		ustack_signal_wait_begin();                                             \
		for (;;) {                                                              \
			uint32_t _seq = ustack_seq(fd);                                 \
			_r = (CALL);                                                    \
			if (_r != USTACK_WAIT)                                          \
				break;                                                  \
			ustack_kick(); /* the peer must hear what we sent to answer */  \
			if (ustack_spinning(&_spin_end))                                \
				continue; /* USTACK_SPIN_US: ask again, no sleep */     \
			int _t = -1;                                                    \
			if (_dl >= 0) {                                                 \
				_t = (int)(_dl - ustack_now_ms());                      \
				if (_t <= 0) {                                          \
					_r = -EAGAIN;                                   \
					break;                                          \
				}                                                       \
			}                                                               \
			/* a handler that ran while we were in Go interrupts the call   \
			 * as it would have interrupted the kernel's */                 \
			int _w = ustack_signal_seen() ? -EINTR : ustack_wait(fd, events, _t, NULL, _seq); \
			if (_w == -EINTR) {                                             \
				int _why = ustack_wait_interrupted();                   \
				if (_why != 0 && ((timeout_ms) > 0 || !(restartable) || _why < 0)) { \
					_r = -EINTR;                                    \
					break;                                          \
				}                                                       \
			}                                                               \
		}                                                                       \
		ustack_spin_done(_spin_end);                                            \
		_r;                                                                     \
	})

#endif
