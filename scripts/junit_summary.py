"""What a pytest run did, read from its JUnit XML (pytest --junitxml=FILE), for a summary a
reader can trust at a glance: a skipped test is never counted as passed.

    python3 scripts/junit_summary.py FILE [--fail-on-skip REGEX]

Prints one line, "passed P, failed F, errors E, skipped S", then one line per skip
reason with its count and one per failing test. Exit status: 0 when no test failed or
errored (and no skip reason matches REGEX), 1 otherwise, 2 when FILE is missing or
unreadable (pytest stopped before writing it) or holds no test at all.
"""

import argparse
import collections
import re
import sys
import xml.etree.ElementTree as ET


def summarize(path, fail_on_skip=None):
    """(exit status, lines)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return 2, [f"no test results ({path}: {e})"]
    counts = collections.Counter()
    reasons = collections.Counter()
    failing = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None:
            counts["failed"] += 1
            failing.append(f"FAILED {name}")
        elif case.find("error") is not None:
            counts["errors"] += 1
            failing.append(f"ERROR  {name}")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
            skipped = case.find("skipped")
            reasons[(skipped.get("message") or "no reason given").strip()] += 1
        else:
            counts["passed"] += 1
    total = sum(counts.values())
    lines = [f"passed {counts['passed']}, failed {counts['failed']}, errors {counts['errors']}, "
             f"skipped {counts['skipped']}"]
    lines += [f"skipped {n}: {reason}" for reason, n in reasons.most_common()]
    lines += failing[:20] + ([f"... and {len(failing) - 20} more"] if len(failing) > 20 else [])
    status = 0
    if total == 0:
        status, lines[0] = 2, lines[0] + " (no test ran)"
    elif counts["failed"] or counts["errors"]:
        status = 1
    elif fail_on_skip and any(re.search(fail_on_skip, reason) for reason in reasons):
        status = 1
        lines.append(f"a skip reason matches {fail_on_skip!r}: those tests did not run here, and had to")
    return status, lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--fail-on-skip", default=None, help="a regular expression: fail if a skip reason matches it")
    args = parser.parse_args(argv)
    status, lines = summarize(args.file, args.fail_on_skip)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
