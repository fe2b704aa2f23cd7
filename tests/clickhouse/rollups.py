"""Feeds ringback's Kafka messages to deploy/clickhouse/schema.sql in chDB (in-process
ClickHouse) and prints its rollups, for tests/analytics.rs to compare with PostgreSQL's.

usage: rollups.py SCHEMA TIMEZONE CDRS.jsonl CALL_STATUS.jsonl [REDELIVERED.jsonl ...]

Each file holds one message value per line, inserted as the Kafka engine's view would (one
insert per file: the redelivered files come after the first two, as a consumer that read
them again would). Prints `table<TAB>row` lines, the rows' fields joined by `|`.
"""

import os
import sys
import tempfile

from chdb import session

ROLLUPS = {
    "cdr_hourly": "formatDateTime(hour, '%Y-%m-%d %H:%i:%S'), source, app_key, service_type, "
    "toString(direction), toString(sum(calls)), toString(sum(answered)), "
    "toString(sum(talk_seconds)), toString(sum(billable_minutes)), toString(sum(ring_seconds)), "
    "toString(sum(ring_calls)), toString(sum(pdd_seconds)), toString(sum(pdd_calls)), "
    "toString(sum(flagged))",
    "cdr_daily": "toString(day), source, app_key, service_type, toString(direction), "
    "toString(sum(calls)), toString(sum(answered)), toString(sum(talk_seconds)), "
    "toString(sum(billable_minutes)), toString(sum(ring_seconds)), toString(sum(ring_calls)), "
    "toString(sum(pdd_seconds)), toString(sum(pdd_calls)), toString(sum(flagged))",
    "cdr_numbers_daily": "toString(day), source, role, number, toString(sum(calls)), "
    "toString(sum(answered)), toString(sum(talk_seconds)), toString(sum(billable_minutes))",
    "hangup_causes_daily": "toString(day), source, kind, toString(code), toString(sum(calls))",
}
KEYS = {
    "cdr_hourly": "hour, source, app_key, service_type, direction",
    "cdr_daily": "day, source, app_key, service_type, direction",
    "cdr_numbers_daily": "day, source, role, number",
    "hangup_causes_daily": "day, source, kind, code",
}


def quote(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def statements(sql):
    sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in sql.split(";") if s.strip()]


def main():
    schema, timezone, cdrs, statuses, *redelivered = sys.argv[1:]
    ddl = open(schema).read().replace("'UTC' /* report.timezone */", f"'{timezone}'")
    if "/* report.timezone */" in ddl:
        sys.exit("schema.sql: a report.timezone placeholder was not replaced")
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        for statement in statements(ddl):
            s.query(statement)
        # kafka.sql needs brokers to run: it is parsed only.
        kafka = open(os.path.join(os.path.dirname(schema), "kafka.sql")).read()
        for statement in statements(kafka):
            s.query("SELECT formatQuery(%s)" % quote(statement))
        for name in [cdrs, statuses, *redelivered]:
            for table in ("cdr_messages", "call_status_messages"):
                # Each file goes to both; the views keep the kind they parse.
                s.query(
                    f"INSERT INTO ringback.{table} "
                    f"SELECT message FROM file('{name}', 'JSONAsString', 'message String')"
                )
        for table, fields in ROLLUPS.items():
            rows = s.query(
                f"SELECT arrayStringConcat([{fields}], '|') FROM ringback.{table} "
                f"GROUP BY {KEYS[table]}",
                "CSV",
            )
            for line in str(rows).splitlines():
                row = line.strip().strip('"')
                print(f"{table}\t{row}")
        for table in ("cdrs", "call_events"):
            n = str(s.query(f"SELECT count() FROM ringback.{table} FINAL", "CSV")).strip()
            print(f"count\t{table}|{n}")


if __name__ == "__main__":
    main()
