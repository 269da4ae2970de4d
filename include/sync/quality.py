"""Data-quality checks of candidates with Great Expectations (GX Core, ephemeral context).

The suite is built from the installed botocore model (required fields, enums, lengths, patterns of each column that
maps to a CreateRelationship field) plus the dataset's own rules. Checks that need Python (JSON against the model,
duplicates within the run, identities already linked) are computed into `*_problem` columns that GX then expects to
be empty, so every rule, whatever computes it, is reported the same way. Import this module inside a task only:
Great Expectations takes seconds to import.
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
from include.sync.candidates import COLUMN_FIELDS, REQUIRED_COLUMNS, Identity, identity, json_problem

# Keep GX's own progress bars and info chatter out of task logs.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

DERIVED_RULES = {
    "support_plan_problem": "support_plan: valid JSON with exactly one known support plan and its required fields",
    "tags_problem": "tags: valid JSON object within the API's tag limits",
    "duplicate_problem": "relationship unique within the run",
    "linked_problem": "relationship not already linked by another candidate",
}


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
        batch_definition = (
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
        suite = context.suites.add(suite)
        self.validation = context.validation_definitions.add(
            gx.ValidationDefinition(name="candidates", data=batch_definition, suite=suite)
        )
        self.seen: dict[Identity, str] = {}

    def check(self, rows: list[dict[str, Any]], linked: dict[Identity, str]) -> QualityResult:
        """Check normalised rows; `linked` maps identities already created to the candidate that created them."""
        if not rows:
            return QualityResult()
        frame = pd.DataFrame(rows, dtype=object)
        frame["support_plan_problem"] = [json_problem("support_plan", row.get("support_plan")) for row in rows]
        frame["tags_problem"] = [json_problem("tags", row.get("tags")) for row in rows]
        problems = [self._identity_problems(row, linked) for row in rows]
        frame["duplicate_problem"] = [duplicate for duplicate, _ in problems]
        frame["linked_problem"] = [already for _, already in problems]
        outcome = self.validation.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["candidate_id"]},
        )
        result = QualityResult(rows=len(rows))
        details = frame.set_index("candidate_id", drop=False)
        for item in outcome.results:
            if item.success:
                continue
            rule = item.expectation_config.meta["rule"]
            column = item.expectation_config.kwargs.get("column")
            failing = [entry["candidate_id"] for entry in item.result.get("unexpected_index_list") or []]
            result.rule_failures[rule] += len(failing)
            for candidate_id in failing:
                detail = details.at[candidate_id, column] if column in DERIVED_RULES else None
                result.reasons.setdefault(candidate_id, []).append(f"{rule} ({detail})" if detail else rule)
        return result

    def _identity_problems(self, row: dict[str, Any], linked: dict[Identity, str]) -> tuple[str | None, str | None]:
        key = identity(row)
        if key is None:
            return None, None
        first = self.seen.setdefault(key, row["candidate_id"])
        duplicate = None if first == row["candidate_id"] else f"same relationship as candidate {first}"
        owner = linked.get(key)
        already = None if owner in (None, row["candidate_id"]) else f"already created for candidate {owner}"
        return duplicate, already


def summary(failures: Counter, rejected: int, rows: int) -> str:
    """The GX summary of a run, one line per failed rule, most frequent first."""
    lines = [f"{rejected} of {rows} candidate(s) failed data-quality rules:"]
    lines += [f"  {count:>7}  {rule}" for rule, count in failures.most_common()]
    return "\n".join(lines)
