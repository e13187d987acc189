"""The history pages in a real browser: Debian's chromium driven by playwright.

Run by tests/browser.rs (ignored by default; .ci/run runs it) against an
orchestrator that recorded three runs of one test (two fast, the last one
slower): opens History, filters by name, picks the first and the last run
and compares them (deltas and overlaid charts), opens the test's trend,
then one run's report. Any console error fails it. Screenshots go to
--screenshots. Prints one JSON line of measurements at the end.
"""

import argparse
import json

from ui import drive, wait_until


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ui", required=True, help="http://HOST:PORT of the orchestrator")
    parser.add_argument("--token", required=True)
    parser.add_argument("--name", required=True, help="the recorded test's name")
    parser.add_argument("--runs", type=int, required=True, help="how many runs it has")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    measured = drive(args.screenshots, args.chromium, "history-failure",
                     lambda page, browser, shot, errors, measured: run(page, args, shot, measured))
    print(json.dumps(measured))


def run(page, args, shot, measured):
    page.goto(args.ui + "/")
    page.wait_for_selector("#token")
    page.fill("#token", args.token)
    page.click("form.login button[type=submit]")

    # The orchestrator offers its history; the list shows every run.
    page.wait_for_selector("#nav-history:not([hidden])")
    page.click("#nav-history")
    wait_until(page, "(n) => document.querySelectorAll('a[data-run]').length === n", args.runs)
    shot(page, "history-list")

    # Filtered by a name no run has: none; by the test's name: all.
    page.fill("#history-name", "no such test")
    page.click("#history-filter button[type=submit]")
    page.wait_for_selector("text=No recorded run matches.")
    page.fill("#history-name", args.name)
    page.click("#history-filter button[type=submit]")
    wait_until(page, "(n) => document.querySelectorAll('a[data-run]').length === n", args.runs)
    ids = page.eval_on_selector_all("a[data-run]", "links => links.map((a) => a.dataset.run)")
    newest, oldest = ids[0], ids[-1]

    # Two runs picked and compared: the older is A.
    assert page.is_disabled("#compare-picked")
    page.check(f"input[data-pick='{newest}']")
    page.check(f"input[data-pick='{oldest}']")
    page.click("#compare-picked")
    page.wait_for_selector("table.compare")
    wait_until(page, "() => document.querySelectorAll('figure.chart path.line').length === 4")
    # The median: a loaded machine can stretch the fast run's tail past the
    # slow one's, never its median past a 50 ms delay.
    p50 = page.inner_text("span[data-metric='latency.p50']")
    measured["p50_change"] = p50
    assert p50.startswith("+"), "the slower run's p50 is higher: " + p50
    assert "fail" in page.get_attribute("span[data-metric='latency.p50']", "class"), "and marked worse"
    assert oldest in page.inner_text("table.kv"), "A is the older run"
    shot(page, "history-compare")

    # The trend of the test: one point per run on each line.
    page.goto(args.ui + "/#/history/trend/" + args.name.replace(" ", "%20"))
    page.wait_for_selector("#trend-charts figure.chart")
    points = page.eval_on_selector_all("#trend-charts path.line", "paths => paths.map((p) => Number(p.dataset.points))")
    measured["trend_points"] = points
    assert points and all(n == args.runs for n in points), points
    shot(page, "history-trend")

    # One run's report, as recorded.
    page.click(f"a[data-run='{newest}']")
    page.wait_for_selector(".result-head")
    measured["run_title"] = page.inner_text(".result-head h2")
    assert newest in measured["run_title"]
    wait_until(page, "() => document.querySelectorAll('figure.chart path.line').length >= 4")
    shot(page, "history-run")


if __name__ == "__main__":
    main()
