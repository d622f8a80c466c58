"""The outbox: the only way the core touches anything outside the process that must not
be lost. ``queue.enqueue`` writes a typed event (``bot.events``) in the caller's
transaction; ``worker.Worker`` delivers it (in order per stream, paced per destination
for all replicas, coalesced, retried with backoff, exclusive claims); the handler of each
kind is declared in ``bot.delivery.registry``."""
