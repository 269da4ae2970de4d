"""The IAM permissions each use of the API needs, as least-privilege policy documents: what the preflight checks, what
an AccessDenied's fix names, and what the README quotes.

python -m include.partner_central.iam create|upsert|mirror|reconcile   prints that policy document (JSON)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from include.partner_central.service_model import service_model
from include.vocabulary import MODE_CREATE, MODE_MIRROR, MODE_UPSERT

IAM_SERVICE = "partnercentral"
RECONCILE = "reconcile"
# The operations each use calls. A sync run also lists the PMAs (its preflight) and looks a relationship up after
# a conflict; each mode calls what the one before it does.
_CREATE = ("CreateRelationship", "GetRelationship", "ListRelationships", "ListProgramManagementAccounts")
_UPSERT = (*_CREATE, "UpdateRelationship", "TagResource", "UntagResource", "ListTagsForResource")
OPERATIONS = {
    MODE_CREATE: _CREATE,
    MODE_UPSERT: _UPSERT,
    MODE_MIRROR: (*_UPSERT, "DeleteRelationship"),
    RECONCILE: ("ListRelationships", "ListProgramManagementAccounts"),
}


def action(operation: str) -> str:
    """The IAM action of an operation of the installed model (`partnercentral:CreateRelationship`)."""
    if operation not in service_model().operation_names:
        raise ValueError(f"{operation} is not an operation of the installed Partner Central Channel model")
    return f"{IAM_SERVICE}:{operation}"


def policy(use: str) -> dict[str, Any]:
    """The least-privilege policy document of a sync mode, or of the reconcile DAG."""
    if use not in OPERATIONS:
        raise ValueError(f"no policy for {use!r}: one of {', '.join(OPERATIONS)}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"PartnerRelationship{use.capitalize()}",
                "Effect": "Allow",
                "Action": [action(operation) for operation in OPERATIONS[use]],
                "Resource": "*",
            }
        ],
    }


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in OPERATIONS:
        sys.exit(__doc__)
    print(json.dumps(policy(sys.argv[1]), indent=2))
