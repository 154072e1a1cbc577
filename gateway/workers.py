"""gunicorn's gthread worker, made to share new connections fairly between processes.

Every worker process polls the same listening socket, and the kernel wakes
them all for a new connection; whichever calls accept() first gets it. A busy
worker is already running, so it tends to win, and with keep-alive clients the
first split lasts: the shared benchmark showed one worker taking all 64
streams while the other sat idle (docs/performance.md). Here a worker that is
serving requests waits a little before accepting, in proportion to how busy
it is, so an idle sibling takes the connection; a lone worker still accepts
everything, at most two milliseconds later.
"""

import time

from gunicorn.workers.gthread import ThreadWorker

ACCEPT_DELAY_PER_CONNECTION = 0.00005  # seconds per connection already held
ACCEPT_DELAY_MAX = 0.002


class BalancedThreadWorker(ThreadWorker):
    def accept(self, server, listener):
        # Connections held, not requests running: a burst of new connections is
        # accepted before any of them has sent its request.
        if self.nr_conns:
            time.sleep(min(self.nr_conns * ACCEPT_DELAY_PER_CONNECTION, ACCEPT_DELAY_MAX))
        super().accept(server, listener)
