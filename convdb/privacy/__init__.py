"""Privacy and retention: erase a person or a customer, export a person, keep messages
no longer than promised (``docs/privacy.md``).

Each command of ``convdb erase``, ``convdb export`` and ``convdb retention``
calls one function here, on an open database::

    from convdb.privacy import erase_contact, export_contact, apply_retention

- :func:`erase_contact`, :func:`erase_customer` (:mod:`.erase`): one
  transaction each, audited in ``erasures``;
- :func:`export_contact` (:mod:`.export`): one JSON-ready document;
- :func:`set_retention`, :func:`apply_retention`, :func:`maintain`
  (:mod:`.retention`);
- shared rows and attachment files nothing uses any more: :mod:`.gc`.
"""

from .erase import ErasureResult, NothingToErase, erase_contact, erase_customer
from .export import EXPORT_FORMAT, EXPORT_VERSION, export_contact
from .retention import apply_retention, maintain, policies, set_retention

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ErasureResult",
    "NothingToErase",
    "apply_retention",
    "erase_contact",
    "erase_customer",
    "export_contact",
    "maintain",
    "policies",
    "set_retention",
]
