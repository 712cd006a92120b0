"""The queue: webhook receivers enqueue, ``convdb queue-worker`` drains.

- :mod:`convdb.queue.enqueue`: :func:`enqueue`, :func:`enqueue_many` (the API
  a webhook receiver calls), :func:`namespaced_key`;
- :mod:`convdb.queue.limits`: what may enter the queue (payload size and
  depth, key and event type length), checked at enqueue and by the worker;
- :mod:`convdb.queue.worker`: :func:`~convdb.queue.worker.run` and
  :class:`~convdb.queue.worker.WorkerConfig` (``convdb queue-worker``);
- :mod:`convdb.queue.manager`: every database operation of the queue
  (:class:`QueueManager`: stats, retry of dead events, purge);
- :mod:`convdb.queue.queries`: the SQL, by name, with the claim query's locking
  explained.

Which handler processes which event type is the plugins' business
(:func:`convdb.plugins.load_handlers`): the core registers its own there.
"""

from .enqueue import enqueue, enqueue_many, namespaced_key
from .limits import Limits
from .manager import QueueManager, QueueStats

__all__ = ["Limits", "QueueManager", "QueueStats", "enqueue", "enqueue_many", "namespaced_key"]
