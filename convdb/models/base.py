"""The base model every convdb table derives from."""

from __future__ import annotations

import peewee

from ..db import database


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False
        # Write only the columns that changed: some columns are filled by the
        # database (generated columns, trigger-maintained values).
        only_save_dirty = True
