r"""Dedup rows always derived from ``raw``; international phone numbers normalized in SQL.

New trigger functions (``convdb_dedup_<table>_v2``, triggers ``<table>_dedup_v2``)
replace the ``_v1`` ones of 005 on the five dedup tables:

- The normalized column and ``hash`` are always computed from ``raw``, on INSERT
  and on every UPDATE that touches ``raw``, the normalized column or ``hash``.
  A value supplied by the statement is overwritten, not trusted and not refused:
  one row per value whoever writes it, and no caller can file a value under
  another value's key. (Python's ``convdb.dedup`` computes the same values; the
  database's derivation wins should the two ever differ.)
- ``phone_numbers`` is the exception where SQL cannot always follow
  libphonenumber: when ``convdb_normalize_phone_v2`` cannot derive ``e164``, the
  statement must supply it (what ``convdb.dedup.normalize_phone`` returns: digits,
  optionally after ``+``), else SQLSTATE ``CV003`` with a hint. An UPDATE that
  changes such a ``raw`` must supply the new ``e164`` too.
- An empty email address or attachment URL (after trimming) is refused
  (SQLSTATE ``CV004``); a supplied ``e164`` that is not digits, optionally after
  ``+``, is refused (``CV005``).
- An UPDATE that gives a row a new hash is checked for 64-bit collisions like
  an INSERT (``CV001``); one that would duplicate another row's value fails on
  ``UNIQUE (hash)``.

``convdb_normalize_phone_v2(raw, refuse => true)`` adds international numbers in
common formatting to v1's strict E.164: a leading ``+`` (or ``tel:+``, any
case), then digits separated by spaces, dashes, dots or parentheses
(``+1 (415) 555-2671``, ``tel:+44-20-7946-0958``) become ``+`` and the digits,
which is what libphonenumber gives for them, unless the digits after the
country calling code could start with that country's national (trunk) prefix:
libphonenumber would then drop it (``+44 (0)20 7946 0958`` ->
``+442079460958``), and SQL refuses rather than guess. So does it for national
numbers (no country code), unknown country codes, extensions, letters, and any
character outside ASCII, full-width forms and whitespace (Unicode versions
differ between Python and the server only outside those). With ``refuse =>
false`` it returns NULL instead of raising ``CV003``.

The national prefixes are libphonenumber's ``national_prefix_for_parsing`` of
each calling code's main region, as of phonenumbers 9.0.43, with ``\d``
written ``[0-9]``; a unit test compares them with the installed phonenumbers.

The ``_v1`` functions stay (rollback points the triggers back at them).
peewee-migrate execs this module without ``__file__``: everything is inline.
"""

from __future__ import annotations

import json

from convdb.sqlutil import run_sql

TRUNK_PREFIX_0 = """
20 27 31 32 33 40 41 43 46 49 51 53 58 60 62 63 64 66 84 90 91 92 93 94 95 98 211 212
213 218 231 232 233 234 243 249 250 251 252 254 255 256 260 262 263 264 265 291 353 355
358 359 373 374 377 380 381 382 383 385 386 387 389 421 508 590 593 594 595 596 598 686
850 855 856 880 886 961 962 963 964 966 967 970 971 972 976 977 994 995 996
"""

NO_TRUNK_PREFIX = """
30 34 39 45 47 48 52 56 65 216 220 221 222 223 224 225 226 227 228 229 230 235 236 237
238 239 240 242 244 245 246 247 248 253 257 258 266 267 268 269 290 297 299 350 351 354
356 357 371 372 376 420 500 501 502 503 504 505 507 509 592 597 599 670 673 674 675 676
677 678 679 680 681 682 683 685 687 688 689 690 691 800 808 852 853 870 878 881 882 883
888 960 965 968 973 974 975 979 992 998
"""

TRUNK_PREFIX_OTHER = {
    "1": "1",
    "7": "8",
    "36": "06",
    "44": "0|180020",
    "54": (
        "0?(?:(11|2(?:2(?:02?|[13]|2[13-79]|4[1-6]|5[2457]|6[124-8]|7[1-4]|8[13-6]|9[1267"
        "])|3(?:02?|1[467]|2[03-6]|3[13-8]|[49][2-6]|5[2-8]|[67])|4(?:7[3-578]|9)|6(?:[01"
        "36]|2[24-6]|4[6-8]?|5[15-8])|80|9(?:0[1-3]|[19]|2[0-9]|3[1-6]|4[02568]?|5[2-4]|6"
        "[2-46]|72?|8[23]?))|3(?:3(?:2[79]|6|8[2578])|4(?:0[0-24-9]|[12]|3[5-8]?|4[24-7]|"
        "5[4-68]?|6[02-9]|7[126]|8[2379]?|9[1-36-8])|5(?:1|2[1245]|3[237]?|4[1-46-9]|6[2-"
        "4]|7[1-6]|8[2-5]?)|6[24]|7(?:[069]|1[1568]|2[15]|3[145]|4[13]|5[14-8]|7[2-57]|8["
        "126])|8(?:[01]|2[15-7]|3[2578]?|4[13-6]|5[4-8]?|6[1-357-9]|7[36-8]?|8[5-8]?|9[12"
        "4])))15)?"
    ),
    "55": "(?:0|90)(?:(1[245]|2[1-35]|31|4[13]|[56]5|99)([0-9]{10,11}))?",
    "57": "0([3579]|4(?:[14]4|56))?",
    "61": "(183[12])|0",
    "81": "(000[2569][0-9]{4,6})$|(?:(?:003768)0?)|0",
    "82": "0(8(?:[1-46-8]|5[0-9][0-9]))?",
    "86": "(1(?:[12][0-9]|79)[0-9][0-9])|0",
    "241": "0(11[0-9]{6}|60[0-9]{6}|61[0-9]{6}|6[256][0-9]{6}|7[467][0-9]{6})",
    "261": "([24-9][0-9]{6})$|0",
    "298": "(10(?:01|[12]0|88))",
    "352": "(15(?:0[06]|1[12]|[35]5|4[04]|6[26]|77|88|99)[0-9])",
    "370": "[08]",
    "375": "0|80?",
    "378": "([89][0-9]{5})$",
    "423": "(1001)|0",
    "506": "(19(?:0[0-2468]|1[09]|20|66|77|99))",
    "591": "0(1[0-9])?",
    "672": "([0-258][0-9]{4})$",
    "692": "1",
    "993": "8",
}


def _trunk_prefixes() -> dict[str, str]:
    prefixes = dict.fromkeys(TRUNK_PREFIX_0.split(), "0")
    prefixes.update(dict.fromkeys(NO_TRUNK_PREFIX.split(), ""))
    prefixes.update(TRUNK_PREFIX_OTHER)
    return dict(sorted(prefixes.items(), key=lambda item: int(item[0])))


CONVDB_PHONE_TRUNK_PREFIXES_V1 = f"""
CREATE OR REPLACE FUNCTION convdb_phone_trunk_prefixes_v1()
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '{json.dumps(_trunk_prefixes(), separators=(",", ":"))}'::jsonb
"""

# The first test is an allow-list checked before NFKC: NFKC of these characters
# is the same in every Unicode version, so Python and the server agree on it.
# A country calling code is 1-3 digits and no code is a prefix of another.
# `(?<=.)` makes the trunk test ask for a non-empty match: some patterns
# (Argentina's) also match the empty string, which strips nothing.
CONVDB_NORMALIZE_PHONE_V2 = r"""
CREATE OR REPLACE FUNCTION convdb_normalize_phone_v2(raw text, refuse boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
DECLARE
    candidate text;
    digits text;
    country text;
    trunk text;
BEGIN
    IF raw ~ ('^[\u0009-\u000d\u001c-\u007e\u0085\u00a0\u1680\u2000-\u200a'
              '\u2028\u2029\u202f\u205f\u3000\uff01-\uff5e]*$') THEN
        candidate := convdb_strip_v1(normalize(raw, NFKC));
        IF candidate ~ '^[+][1-9][0-9]{1,14}$' THEN
            RETURN candidate;
        END IF;
        IF candidate ~* '^(tel:)?[+][0-9]+([ .()-]+[0-9]+)*[)]?$' THEN
            digits := regexp_replace(candidate, '[^0-9]', '', 'g');
            country := CASE
                WHEN convdb_phone_trunk_prefixes_v1() ? left(digits, 1) THEN left(digits, 1)
                WHEN convdb_phone_trunk_prefixes_v1() ? left(digits, 2) THEN left(digits, 2)
                WHEN convdb_phone_trunk_prefixes_v1() ? left(digits, 3) THEN left(digits, 3)
            END;
            trunk := convdb_phone_trunk_prefixes_v1() ->> country;
            IF trunk = '' OR substr(digits, length(country) + 1) !~ ('^(?:' || trunk || ')(?<=.)')
            THEN
                RETURN '+' || digits;
            END IF;
        END IF;
    END IF;
    IF NOT refuse THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'CV003',
        MESSAGE = format('phone_numbers: cannot normalize %L in SQL', raw),
        HINT = 'Insert the e164 computed by convdb.dedup.normalize_phone(), or write the '
               'number in international form without its trunk prefix (+1 415 555 2671).';
END;
$$
"""

CONVDB_DEDUP_REFUSE_EMPTY_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_refuse_empty_v1(table_name text, raw text, normalized text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF normalized = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'CV004',
            MESSAGE = format('%s: refusing %L, empty once trimmed', table_name, left(raw, 80));
    END IF;
END;
$$
"""

# The same body for the four text tables; phone_numbers has its own below.
# An upsert that finds its row (ON CONFLICT ... DO UPDATE SET hash = EXCLUDED.hash)
# changes none of the three columns: it skips the work.
_TEXT_TRIGGER = """
CREATE OR REPLACE FUNCTION convdb_dedup_{table}_v2()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.raw IS NOT DISTINCT FROM OLD.raw
       AND NEW.{column} IS NOT DISTINCT FROM OLD.{column}
       AND NEW.hash IS NOT DISTINCT FROM OLD.hash THEN
        RETURN NEW;
    END IF;
    NEW.{column} := {normalize}(NEW.raw);{refuse_empty}
    NEW.hash := convdb_hash_v1(NEW.{column});
    IF TG_OP = 'INSERT' OR NEW.hash <> OLD.hash THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.{column},
            (SELECT {column} FROM {table} WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""
_REFUSE_EMPTY = """
    PERFORM convdb_dedup_refuse_empty_v1(TG_TABLE_NAME, NEW.raw, NEW.{column});"""


def _text_trigger(table: str, column: str, normalize: str, *, empty_ok: bool) -> str:
    refuse_empty = "" if empty_ok else _REFUSE_EMPTY.format(column=column)
    return _TEXT_TRIGGER.format(
        table=table, column=column, normalize=normalize, refuse_empty=refuse_empty
    )


CONVDB_DEDUP_EMAIL_BODIES_V2 = _text_trigger(
    "email_bodies", "normalized", "convdb_normalize_body_v1", empty_ok=True
)
CONVDB_DEDUP_XMS_BODIES_V2 = _text_trigger(
    "xms_bodies", "normalized", "convdb_normalize_body_v1", empty_ok=True
)
CONVDB_DEDUP_EMAIL_ADDRESSES_V2 = _text_trigger(
    "email_addresses", "lowered", "convdb_normalize_email_v1", empty_ok=False
)
CONVDB_DEDUP_ATTACHMENT_URLS_V2 = _text_trigger(
    "attachment_urls", "normalized", "convdb_normalize_url_v1", empty_ok=False
)

# Where SQL derives e164 it wins; where it cannot, the statement's e164 is kept
# (only libphonenumber can compute it) after a check of its form. An UPDATE of
# raw that leaves e164 as it was must be one SQL can derive.
CONVDB_DEDUP_PHONE_NUMBERS_V2 = """
CREATE OR REPLACE FUNCTION convdb_dedup_phone_numbers_v2()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    derived text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.raw IS NOT DISTINCT FROM OLD.raw
       AND NEW.e164 IS NOT DISTINCT FROM OLD.e164
       AND NEW.hash IS NOT DISTINCT FROM OLD.hash THEN
        RETURN NEW;
    END IF;
    derived := convdb_normalize_phone_v2(NEW.raw, refuse => false);
    IF derived IS NOT NULL THEN
        NEW.e164 := derived;
    ELSIF NEW.e164 IS NULL OR (TG_OP = 'UPDATE' AND NEW.raw <> OLD.raw AND NEW.e164 = OLD.e164)
    THEN
        PERFORM convdb_normalize_phone_v2(NEW.raw);
    ELSIF NEW.e164 !~ '^[+]?[0-9]+$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'CV005',
            MESSAGE = format('phone_numbers: e164 %L given for %L is not a normalized number',
                             left(NEW.e164, 80), left(NEW.raw, 80)),
            HINT = 'Give what convdb.dedup.normalize_phone() returns (digits, optionally '
                   'after +), or leave e164 out for a number written with its country code.';
    END IF;
    NEW.hash := convdb_hash_v1(NEW.e164);
    IF TG_OP = 'INSERT' OR NEW.hash <> OLD.hash THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.e164,
            (SELECT e164 FROM phone_numbers WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""

TABLES = ["email_bodies", "xms_bodies", "phone_numbers", "email_addresses", "attachment_urls"]

# (definition, what DROP names) in creation order; rollback drops in reverse.
FUNCTIONS = [
    (CONVDB_PHONE_TRUNK_PREFIXES_V1, "convdb_phone_trunk_prefixes_v1()"),
    (CONVDB_NORMALIZE_PHONE_V2, "convdb_normalize_phone_v2(text, boolean)"),
    (CONVDB_DEDUP_REFUSE_EMPTY_V1, "convdb_dedup_refuse_empty_v1(text, text, text)"),
    (CONVDB_DEDUP_EMAIL_BODIES_V2, "convdb_dedup_email_bodies_v2()"),
    (CONVDB_DEDUP_XMS_BODIES_V2, "convdb_dedup_xms_bodies_v2()"),
    (CONVDB_DEDUP_PHONE_NUMBERS_V2, "convdb_dedup_phone_numbers_v2()"),
    (CONVDB_DEDUP_EMAIL_ADDRESSES_V2, "convdb_dedup_email_addresses_v2()"),
    (CONVDB_DEDUP_ATTACHMENT_URLS_V2, "convdb_dedup_attachment_urls_v2()"),
]


def dedup_trigger(table: str, version: int) -> str:
    """The trigger ``<table>_dedup_v<version>``, running ``convdb_dedup_<table>_v<version>``."""
    return f"""
CREATE TRIGGER {table}_dedup_v{version}
    BEFORE INSERT OR UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION convdb_dedup_{table}_v{version}()
"""


def migrate(migrator, database, *, fake=False):
    """Create the v2 functions, then swap each table's v1 trigger for its v2 one."""
    for definition, _ in FUNCTIONS:
        run_sql(migrator, definition)
    for table in TABLES:
        run_sql(migrator, f"DROP TRIGGER {table}_dedup_v1 ON {table}")
        run_sql(migrator, dedup_trigger(table, 2))


def rollback(migrator, database, *, fake=False):
    """Point every table back at its v1 trigger, then drop the v2 functions."""
    for table in TABLES:
        run_sql(migrator, f"DROP TRIGGER {table}_dedup_v2 ON {table}")
        run_sql(migrator, dedup_trigger(table, 1))
    for _, dropped in reversed(FUNCTIONS):
        run_sql(migrator, f"DROP FUNCTION {dropped}")
