"""The summary of a Schemathesis run, from its NDJSON event log (scripts/test-api-fuzz).

    python summary.py REPORT_DIR EXIT_STATUS SECONDS

Prints a detail line (operations, test cases, requests, checks, status codes seen, wall time)
and then the plain closing line "api-fuzz: N passed, N failed", where N counts test cases; a
scenario that errored (the generator or a hook failed) counts as a failed test case too, and so
does a run that exited non-zero without a failed test case (a crash, a timeout).
"""

import collections
import glob
import json
import os
import sys


def main() -> int:
    report_dir, exit_status, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    logs = sorted(glob.glob(os.path.join(report_dir, "*.ndjson")))
    operations: set[str] = set()
    cases = failed_cases = errors = requests = checks = 0
    failed_checks: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[int] = collections.Counter()
    stop_reason = "no event log"
    for path in logs:
        with open(path) as f:
            for line in f:
                event = json.loads(line)
                if "EngineFinished" in event:
                    stop_reason = event["EngineFinished"].get("stop_reason", "?")
                finished = event.get("ScenarioFinished")
                if finished is None:
                    continue
                if finished.get("status") == "error":
                    errors += 1
                recorder = finished.get("recorder", {})
                if "cases" in recorder:
                    operations.add(recorder.get("label", "?"))
                cases += len(recorder.get("cases", {}))
                for case_checks in recorder.get("checks", {}).values():
                    checks += len(case_checks)
                    bad = [c["name"] for c in case_checks if c.get("status") == "failure"]
                    failed_checks.update(bad)
                    failed_cases += bool(bad)
                for interaction in recorder.get("interactions", {}).values():
                    requests += 1
                    response = interaction.get("response") or {}
                    if "status_code" in response:
                        statuses[response["status_code"]] += 1
    failed = failed_cases + errors
    if exit_status != 0 and failed == 0:
        failed = 1
    seen = " ".join(f"{code}x{n}" for code, n in sorted(statuses.items()))
    detail = (
        f"api-fuzz: {len(operations)} operations, {cases} test cases, {requests} requests, "
        f"{checks} checks, {errors} errors, stop: {stop_reason}, exit {exit_status}, {seconds} s; "
        f"statuses {seen or 'none'}"
    )
    if failed_checks:
        detail += "; failed checks: " + ", ".join(f"{n} x{c}" for n, c in failed_checks.most_common())
    print(detail)
    print(f"api-fuzz: {cases - failed_cases} passed, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
