/* TX kicks made by the front (see struct ustack_txkick in ustack.h). */
#include "ustack.h"
#include <errno.h>

struct ustack_txkick ustack_txkick;
__thread int ustack_in_batch __attribute__((tls_model("initial-exec")));

void ustack_kick_slow(void)
{
	if (!__atomic_exchange_n(&ustack_txkick.pending, 0, __ATOMIC_SEQ_CST))
		return; /* another thread made it */
	int xsk = ustack_xsk_fd;
	if (xsk < 0)
		return;
	int saved = errno;
	if (ustack_real.sendto(xsk, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && (errno == EAGAIN || errno == EBUSY)) {
		/* frames were left on the ring: the next kick sends them */
		__atomic_store_n(&ustack_txkick.pending, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&ustack_txkick.busy, 1, __ATOMIC_RELAXED);
	}
	errno = saved;
	__atomic_add_fetch(&ustack_txkick.kicks, 1, __ATOMIC_RELAXED);
}

void ustack_kick_or_defer(void)
{
	if (ustack_in_batch) {
		/* counted before defer_ok is read, the poller counts after clearing it: either it sees
		 * this call and keeps its promise, or this call sees defer_ok cleared and kicks */
		__atomic_add_fetch(&ustack_txkick.batched, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&ustack_txkick.defer_ok, __ATOMIC_SEQ_CST))
			return;
		__atomic_add_fetch(&ustack_txkick.refused, 1, __ATOMIC_RELAXED);
	}
	ustack_kick_slow();
}
