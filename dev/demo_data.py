"""Sample candidates for the demo and the tests: realistic rows, some of them bad in the ways real feeds are.

python -m dev.demo_data seed PATH     create and fill the candidates table of a SQLite warehouse (once)
python -m dev.demo_data report PATH   print the last run's counts and where to look
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import sys
from typing import Any

from include.sync.settings import Tables
from include.sync.warehouse import candidate_table_ddl
from include.vocabulary import CANDIDATE_COLUMNS

PMA = "pma-demo123456789"
COMPANIES = [
    "Northwind Traders",
    "Contoso Retail",
    "Fabrikam Health",
    "Tailspin Toys",
    "Wingtip Analytics",
    "Adatum Logistics",
    "Litware Finance",
    "Proseware Media",
    "Fourth Coffee",
    "Woodgrove Energy",
    "Alpine Ski House",
    "Blue Yonder Air",
    "Coho Winery",
    "Graphic Design Co",
    "Humongous Insurance",
    "Lamna Healthcare",
    "Margie's Travel",
    "Relecloud Labs",
    "Trey Research",
    "VanArsdel Foods",
    "Wide World Importers",
    "Southridge Video",
    "Lucerne Publish",
    "Datum Systems",
    "Nod Publishers",
]


def sample_candidates(day: dt.date, good: int = 25) -> list[dict[str, Any]]:
    """`good` valid candidates and 5 bad ones, all updated during `day` (UTC)."""
    base = dt.datetime.combine(day, dt.time(8, 0), tzinfo=dt.timezone.utc)
    rows = []
    for n in range(good):
        rows.append(
            {
                "candidate_id": f"cand-{n + 1:04d}",
                "catalog": "Sandbox",
                "association_type": ("END_CUSTOMER", "DOWNSTREAM_SELLER", "END_CUSTOMER")[n % 3],
                "program_management_account_identifier": PMA,
                "associated_account_id": f"{(n + 1) * 37_000_000_123 % 10**12:012d}",
                "display_name": COMPANIES[n % len(COMPANIES)],
                "resale_account_model": "END_CUSTOMER" if n % 4 == 0 else None,
                "sector": "GOVERNMENT" if n % 5 == 0 else "COMMERCIAL",
                "account_scope": None,
                "support_plan": json.dumps(
                    {"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "us-east-1"}}
                )
                if n % 6 == 0
                else None,
                "tags": json.dumps({"source": "crm", "region": ("emea", "amer", "apac")[n % 3]}),
                "updated_at": (base + dt.timedelta(minutes=17 * n)).isoformat(),
            }
        )
    template = dict(rows[0], tags=None, support_plan=None, resale_account_model=None)
    at = (base + dt.timedelta(hours=10)).isoformat()
    rows += [
        # An id that went through a numeric column and lost its leading zeros.
        dict(
            template,
            candidate_id="cand-bad-01",
            associated_account_id="12345678901",
            display_name="Zero Lost Inc",
            updated_at=at,
        ),
        dict(
            template,
            candidate_id="cand-bad-02",
            associated_account_id="210987654321",
            sector="Commercial",
            display_name="Wrong Case Sector",
            updated_at=at,
        ),
        dict(
            template,
            candidate_id="cand-bad-03",
            associated_account_id="310987654321",
            display_name="   ",
            updated_at=at,
        ),
        dict(
            template,
            candidate_id="cand-bad-04",
            associated_account_id="410987654321",
            display_name="Two Plans",
            support_plan=json.dumps(
                {
                    "partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "us-east-1"},
                    "resoldEnterprise": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "us-east-1"},
                }
            ),
            updated_at=at,
        ),
        dict(
            template,
            candidate_id="cand-bad-05",
            associated_account_id="510987654321",
            display_name="A display name that is far too long",
            tags="{team: alliances}",
            updated_at=at,
        ),
    ]
    return rows


def distinct_candidates(day: dt.date, count: int, first_account: int, bad: bool = False) -> list[dict[str, Any]]:
    """`count` valid sample candidates updated during `day`, with accounts first_account.. and ids unique across
    days (for the end-to-end tests and the benchmark), and the five bad sample rows when `bad`."""
    rows = []
    for n, row in enumerate(sample_candidates(day, good=count)):
        if row["candidate_id"].startswith("cand-bad"):
            if bad:
                rows.append(dict(row, candidate_id=f"{day:%m%d}-{row['candidate_id']}"))
            continue
        account = f"{first_account + n:012d}"
        rows.append(dict(row, candidate_id=f"{day:%m%d}-cand-{n:04d}", associated_account_id=account))
    return rows


def insert_candidates(connection: Any, rows: list[dict[str, Any]], table: str, placeholder: str = "?") -> None:
    columns = ", ".join(CANDIDATE_COLUMNS)
    values = ", ".join(placeholder for _ in CANDIDATE_COLUMNS)
    connection.cursor().executemany(
        f"INSERT INTO {table} ({columns}) VALUES ({values})", [[row[c] for c in CANDIDATE_COLUMNS] for row in rows]
    )
    connection.commit()


def seed(path: str) -> dt.date:
    """Create and fill the demo table unless it has rows; return the day the rows were updated."""
    table = Tables().candidates
    with sqlite3.connect(path) as connection:
        connection.execute(candidate_table_ddl(table))
        latest = connection.execute(f"SELECT MAX(updated_at) FROM {table}").fetchone()[0]
        if latest is None:
            day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
            insert_candidates(connection, sample_candidates(day), table)
            return day
        return dt.datetime.fromisoformat(latest).date()


def report(path: str) -> None:
    tables = Tables()
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        run = connection.execute(f"SELECT * FROM {tables.runs} ORDER BY started_at DESC LIMIT 1").fetchone()
        states = connection.execute(
            f"SELECT status, COUNT(*) AS n FROM {tables.outcomes} GROUP BY status ORDER BY status"
        ).fetchall()
        rejected = connection.execute(
            f"SELECT candidate_id, error_message FROM {tables.outcomes} WHERE status = 'rejected' ORDER BY 1 LIMIT 5"
        ).fetchall()
    if run is None:
        print("No sync run recorded yet.")
        return
    from include.sync.steps import counts_table

    print(f"Sync run {run['dag_run_id']} (data interval {run['data_interval_start']} .. {run['data_interval_end']}):")
    print(counts_table(dict(run)))
    if not run["created"] and run["skipped_done"]:
        print("Nothing new to send: every valid candidate was created by an earlier run, and none is sent twice.")
    print("Current state of every candidate (partner_relationship_outcomes):")
    for state in states:
        print(f"  {state['status']:<20} {state['n']:>9}")
    if rejected:
        print("Some rejected candidates and why:")
        for row in rejected:
            print(f"  {row['candidate_id']}: {row['error_message']}")
    print(f"Look at the tables with: sqlite3 {path} 'SELECT * FROM {tables.outcomes}'")
    print(f"  history: {tables.attempts}, runs: {tables.runs}, input: {tables.candidates}")


if __name__ == "__main__":
    command, target = sys.argv[1], sys.argv[2]
    if command == "seed":
        print(seed(target) + dt.timedelta(days=1))
    else:
        report(target)
