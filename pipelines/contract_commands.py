"""`bulkgen contract extract|diff`: the contract read from the app's code, and where the hand-kept one disagrees.

Neither touches a database. `diff` exits 1 on a disagreement, like `audit` on an error finding.
"""

from __future__ import annotations

import argparse
import json

from assets.audit.code_contract import extract_code_contract
from assets.audit.contract import DEFAULT_CONTRACT, load_contract
from assets.audit.contract_diff import diff_contract, diff_json, diff_text

EXIT_OK, EXIT_DISAGREE = 0, 1


def extract(args: argparse.Namespace, database=None) -> int:
    code = extract_code_contract(args.source)
    print(code.to_json() if args.format == "json" else code.to_yaml(), end="" if args.format == "yaml" else "\n")
    return EXIT_OK


def diff(args: argparse.Namespace, database=None) -> int:
    contract = load_contract(args.contract)
    code = extract_code_contract(args.source)
    disagreements = diff_contract(contract, code)
    if args.format == "json":
        print(json.dumps({"disagreements": diff_json(disagreements), "dynamic_tables": code.dynamic_tables}, indent=2))
    else:
        print(diff_text(disagreements, code))
    return EXIT_DISAGREE if disagreements else EXIT_OK


def add_contract_commands(commands) -> None:
    """`contract extract` and `contract diff` under the CLI's subcommands."""
    group = commands.add_parser("contract", help="The contract read from the app's own code (no database).",
                                description="The contract read from the app's own code (no database).")
    actions = group.add_subparsers(required=True, metavar="ACTION")
    sub = actions.add_parser("extract", help="What the code writes, per table and column, with evidence.")
    sub.add_argument("--source", required=True, help="the app's source folder (.ts, .tsx, .js)")
    sub.add_argument("--format", choices=["yaml", "json"], default="yaml")
    sub.set_defaults(command=extract, uses_database=False)
    sub = actions.add_parser("diff", help="Where the contract and the code disagree (exit 1 if they do).")
    sub.add_argument("--source", required=True, help="the app's source folder (.ts, .tsx, .js)")
    sub.add_argument("--contract", default=str(DEFAULT_CONTRACT), help="contract file (YAML)")
    sub.add_argument("--format", choices=["text", "json"], default="text")
    sub.set_defaults(command=diff, uses_database=False)
