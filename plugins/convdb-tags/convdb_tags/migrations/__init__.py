"""Migrations of the tags plugin (peewee-migrate modules, history ``migratehistory_tags``)."""
