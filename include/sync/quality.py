"""Data-quality checks of candidates with Great Expectations (GX Core, ephemeral context).

The suite is built from the installed botocore model (required fields, enums, lengths, patterns of each column that
maps to a CreateRelationship field) plus the dataset's own rules. Checks that need Python (value types, JSON against
the model, identities already linked) are computed into `*_problem` columns that GX then expects to be empty, so
every rule, whatever computes it, is reported the same way. One relationship per run is decided last: only a
candidate that passes every other rule can claim a relationship identity, so an invalid twin never blocks a valid
one. Import this module inside a task only: Great Expectations takes seconds to import.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage reports from inside tasks

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from include.partner_central.service_model import member_shape
from include.sync.candidates import COLUMN_FIELDS, REQUIRED_COLUMNS, identity_token, json_problem

# Keep GX's own progress bars and info chatter out of task logs.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

DERIVED_RULES = {
    "type_problem": "values of the expected types (text, digits, JSON, timestamp)",
    "support_plan_problem": "support_plan: valid JSON with exactly one known support plan and its required fields",
    "tags_problem": "tags: valid JSON object within the API's tag limits",
    "linked_problem": "relationship not already linked by another candidate",
}
DUPLICATE_RULE = "relationship unique within the run"


def model_rules() -> list[tuple[str, Any]]:
    """(rule, expectation) for every constraint the model puts on a candidate column."""
    rules: list[tuple[str, Any]] = []
    for column in REQUIRED_COLUMNS:
        rules.append((f"{column}: required", gxe.ExpectColumnValuesToNotBeNull(column=column)))
    for column, api_field in COLUMN_FIELDS.items():
        shape = member_shape(api_field)
        if shape.enum:
            rules.append(
                (
                    f"{column}: one of {', '.join(shape.enum)}",
                    gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(shape.enum)),
                )
            )
            continue
        low, high, pattern = shape.metadata.get("min"), shape.metadata.get("max"), shape.metadata.get("pattern")
        if low is not None or high is not None:
            rules.append(
                (
                    f"{column}: length {low}..{high}",
                    gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=low, max_value=high),
                )
            )
        if pattern:
            rules.append(
                (
                    f"{column}: matches {pattern}",
                    gxe.ExpectColumnValuesToMatchRegex(column=column, regex=f"^(?:{pattern})$"),
                )
            )
    return rules


def dataset_rules() -> list[tuple[str, Any]]:
    rules = [
        (
            "associated_account_id: exactly 12 digits (an id stored as a number loses its leading zeros)",
            gxe.ExpectColumnValuesToMatchRegex(column="associated_account_id", regex=r"^[0-9]{12}$"),
        ),
        ("display_name: not blank", gxe.ExpectColumnValuesToNotMatchRegex(column="display_name", regex=r"^\s*$")),
    ]
    rules += [(rule, gxe.ExpectColumnValuesToBeNull(column=column)) for column, rule in DERIVED_RULES.items()]
    return rules


@dataclass
class QualityResult:
    """Per chunk: the reasons of each rejected row (by candidate_id), and how often each rule failed."""

    reasons: dict[str, list[str]] = field(default_factory=dict)
    rule_failures: Counter = field(default_factory=Counter)
    rows: int = 0


class CandidateChecks:
    """One GX suite, built once per task, run on each chunk of candidates."""

    def __init__(self) -> None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.batch_definition = (
            context.data_sources.add_pandas("warehouse")
            .add_dataframe_asset("partner_relationship_candidates")
            .add_batch_definition_whole_dataframe("chunk")
        )
        suite = gx.ExpectationSuite(name="partner_relationship_candidates")
        self.rules: dict[str, str] = {}
        for rule, expectation in [*model_rules(), *dataset_rules()]:
            expectation.meta = {"rule": rule}
            added = suite.add_expectation(expectation)
            self.rules[str(added.id)] = rule
        self.suite = context.suites.add(suite)
        # The frame GX checks holds only the columns a rule reads: GX fingerprints every batch's whole frame.
        self.columns = sorted(
            {"candidate_id", *(expectation.column for expectation in self.suite.expectations)} - set(DERIVED_RULES)
        )
        self.seen: dict[str, str] = {}  # relationship identity (its token) → the first valid candidate

    def check(
        self, rows: list[dict[str, Any]], linked: dict[str, str], type_problems: dict[str, list[str]] | None = None
    ) -> QualityResult:
        """Check normalised rows in candidate_id order; `linked` maps the identity tokens of relationships already
        created to the candidate that created them; `type_problems` what normalisation found, per candidate."""
        if not rows:
            return QualityResult()
        type_problems = type_problems or {}
        derived = {
            "type_problem": ["; ".join(type_problems.get(row["candidate_id"], [])) or None for row in rows],
            "support_plan_problem": [json_problem("support_plan", row.get("support_plan")) for row in rows],
            "tags_problem": [json_problem("tags", row.get("tags")) for row in rows],
            "linked_problem": [self._linked_problem(row, linked) for row in rows],
        }
        frame = pd.DataFrame({column: [row.get(column) for row in rows] for column in self.columns}, dtype=object)
        for column, values in derived.items():
            frame[column] = pd.Series(values, dtype=object)
        # Batch.validate keeps no validation results in the context's store (nobody reads them back). Failing rows
        # come back as positions in the frame's default index: cheaper for GX than looking up an id column per row.
        outcome = self.batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
            self.suite,
            result_format={
                "result_format": "COMPLETE",
                "exclude_unexpected_values": True,
                "return_unexpected_index_query": False,
            },
        )
        result = QualityResult(rows=len(rows))
        for item in outcome.results:
            if item.success:
                continue
            rule = item.expectation_config.meta["rule"]
            column = item.expectation_config.kwargs.get("column")
            failing = item.result.get("unexpected_index_list") or []
            result.rule_failures[rule] += len(failing)
            for position in failing:
                detail = derived[column][position] if column in derived else None
                result.reasons.setdefault(rows[position]["candidate_id"], []).append(
                    f"{rule} ({detail})" if detail else rule
                )
        for row in rows:  # in candidate_id order: the first valid candidate of a relationship claims it
            key = self._token(row)
            if key is None or row["candidate_id"] in result.reasons:
                continue
            first = self.seen.setdefault(key, row["candidate_id"])
            if first != row["candidate_id"]:
                result.rule_failures[DUPLICATE_RULE] += 1
                result.reasons[row["candidate_id"]] = [f"{DUPLICATE_RULE} (same relationship as candidate {first})"]
        return result

    @staticmethod
    def _token(row: dict[str, Any]) -> str | None:
        """The relationship's identity as its token: the triage computed it once per row."""
        return row["client_token"] if "client_token" in row else identity_token(row)

    def _linked_problem(self, row: dict[str, Any], linked: dict[str, str]) -> str | None:
        owner = linked.get(self._token(row) or "")
        return None if owner in (None, row["candidate_id"]) else f"already created for candidate {owner}"


def summary(failures: Counter, rejected: int, rows: int) -> str:
    """The GX summary of a run, one line per failed rule, most frequent first."""
    lines = [f"{rejected} of {rows} candidate(s) failed data-quality rules:"]
    lines += [f"  {count:>7}  {rule}" for rule, count in failures.most_common()]
    return "\n".join(lines)
