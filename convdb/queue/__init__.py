"""The queue: webhook receivers enqueue, ``convdb queue-worker`` drains.

- :mod:`convdb.queue.enqueue`: :func:`enqueue`, :func:`enqueue_many` (the API
  a webhook receiver calls);
- :mod:`convdb.queue.worker`: :func:`~convdb.queue.worker.run` and
  :class:`~convdb.queue.worker.WorkerConfig` (``convdb queue-worker``);
- :mod:`convdb.queue.manager`: every database operation of the queue
  (:class:`QueueManager`: stats, retry of dead events, purge);
- :mod:`convdb.queue.queries`: the SQL, by name, with the claim query's locking
  explained.

Which handler processes which event type is the plugins' business
(:func:`convdb.plugins.load_handlers`): the core registers its own there.
"""

from .enqueue import enqueue, enqueue_many
from .manager import QueueManager, QueueStats

__all__ = ["QueueManager", "QueueStats", "enqueue", "enqueue_many"]
