"""The web UI in a real browser: Debian's chromium driven by playwright.

Run by tests/browser.rs (ignored by default; .ci/run runs it) against a
three-peer cluster it started: signs in with a token, starts a test from
the form, watches the live charts gain points, changes the rate, kills a
peer (by its pid) and sees it marked and its share moved, stops the test,
opens the result, downloads its HTML report and opens that offline. Any
console error fails it. Screenshots go to --screenshots.

Prints one JSON line of measurements at the end.
"""

import argparse
import json
import os
import signal
import sys
import time

from playwright.sync_api import sync_playwright


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ui", required=True, help="http://HOST:PORT of the serving peer")
    parser.add_argument("--token", required=True)
    parser.add_argument("--target", required=True, help="URL the test loads")
    parser.add_argument("--kill-pid", type=int, required=True)
    parser.add_argument("--kill-name", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    measured = drive(args.screenshots, args.chromium, "failure",
                     lambda page, browser, shot, errors, measured: run(page, browser, args, shot, measured, errors))
    print(json.dumps(measured))


def drive(screenshots, chromium, failure_name, steps):
    """Runs `steps(page, browser, shot, errors, measured)` in chromium.

    Console errors and page errors are collected; any of them, or an
    exception in the steps (after a screenshot named `failure_name` and the
    page's text), fails the run. Returns what the steps measured.
    """
    os.makedirs(screenshots, exist_ok=True)
    shot = lambda page, name: page.screenshot(path=os.path.join(screenshots, name + ".png"), full_page=True)
    errors = []
    measured = {}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda m: m.type == "error" and errors.append("console: " + m.text))
        page.on("pageerror", lambda e: errors.append("page: " + str(e)))
        try:
            steps(page, browser, shot, errors, measured)
        except Exception:
            shot(page, failure_name)
            print("page text at the failure:\n" + page.inner_text("body"), file=sys.stderr)
            print("\n".join(errors), file=sys.stderr)
            raise
        browser.close()

    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    return measured


def wait_until(page, predicate, arg=None, timeout=20_000):
    """Polls `predicate` (a JS function of `arg`) until it is true.

    Not page.wait_for_function: that compiles its predicate inside the page,
    which the UI's Content-Security-Policy (no eval) rightly refuses.
    """
    deadline = time.time() + timeout / 1000
    while True:
        if page.evaluate(predicate, arg):
            return
        if time.time() > deadline:
            raise TimeoutError("still false after %d ms: %s" % (timeout, predicate))
        time.sleep(0.1)


def run(page, browser, args, shot, measured, errors):
    """The person's steps, each waiting for what it should show."""

    # Sign in.
    page.goto(args.ui + "/")
    page.wait_for_selector("#token")
    shot(page, "0-sign-in")
    page.fill("#token", args.token)
    page.click("form.login button[type=submit]")

    # Cluster: three peers, alive.
    wait_until(page, "() => document.querySelectorAll('#peers tbody tr [data-state=alive]').length === 3")
    shot(page, "1-cluster")

    # Start a test from the form; a bad value is marked at its field.
    page.click("a[data-view=start]")
    page.wait_for_selector("#f-url")
    page.fill("#f-url", args.target)
    page.fill("#f-tps", "300")
    page.fill("#f-duration", "forever")
    page.wait_for_selector("[data-field=duration].invalid")
    assert page.is_disabled("#start-button"), "a bad duration must not be sent"
    measured["marked_field"] = page.inner_text("[data-field=duration] .field-error")
    page.fill("#f-duration", "60s")
    wait_until(page, "() => document.getElementById('preview-total').textContent.startsWith('18000 arrivals')")
    assert page.locator("#preview path.line").count() == 1, "the curve preview is drawn"
    shot(page, "2-start")
    page.click("#start-button")
    page.wait_for_url("**#/live")

    # Live: the achieved line gains points; three peers in the table.
    achieved = "document.querySelector('#live-charts path[data-line=achieved]')"
    wait_until(page, f"() => {achieved} && Number({achieved}.dataset.points) >= 3")
    first = int(page.eval_on_selector("#live-charts path[data-line=achieved]", "e => e.dataset.points"))
    wait_until(page, f"() => Number({achieved}.dataset.points) >= {first + 2}")
    wait_until(page, "() => document.querySelectorAll('#live-peer-table tbody tr').length === 3")
    shot(page, "3-live")

    # A new rate moves the target line.
    target_path = page.get_attribute("#live-charts path[data-line=target]", "d")
    page.fill("#new-rate", "600")
    page.click("#change-rate")
    wait_until(page, "() => document.getElementById('live-target').textContent === '600/s'")
    wait_until(
        page,
        "d => document.querySelector('#live-charts path[data-line=target]').getAttribute('d') !== d",
        target_path,
    )
    measured["target_after_change"] = page.inner_text("#live-target")

    # A peer killed: marked not alive, its share moved to the others.
    os.kill(args.kill_pid, signal.SIGKILL)
    killed_at = time.time()
    wait_until(
        page,
        """name => {
            const rows = [...document.querySelectorAll('#live-peer-table tbody tr')];
            const row = rows.find(r => r.cells[0].textContent === name);
            const others = rows.filter(r => r !== row);
            return row && row.querySelector('[data-state]').dataset.state !== 'alive'
                && row.cells[2].textContent === '–'
                && others.every(r => r.cells[2].textContent === '50.0 %');
        }""",
        args.kill_name,
        timeout=30_000,
    )
    measured["resplit_seen_after_s"] = round(time.time() - killed_at, 1)
    shot(page, "4-live-peer-lost")

    # Stop, then the result.
    page.click("#stop-test")
    wait_until(page, "() => ['STOPPING','STOPPED'].includes(document.getElementById('live-phase').textContent)")
    page.wait_for_selector("#open-result", timeout=30_000)
    shot(page, "5-live-stopped")
    page.click("#open-result")
    page.wait_for_selector(".result-head [data-verdict]")
    page.wait_for_selector("section.charts figure.chart path.line")
    measured["result_outcome"] = page.inner_text("table.kv tr:first-child td:last-child")
    shot(page, "6-result")

    # Download the HTML report and open it with the network disabled.
    with page.expect_download() as download:
        page.click("a[data-format=HTML]")
    saved = os.path.join(args.screenshots, "report.html")
    download.value.save_as(saved)
    offline = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    report = offline.new_page()
    report.on("console", lambda m: m.type == "error" and errors.append("report console: " + m.text))
    report.on("pageerror", lambda e: errors.append("report page: " + str(e)))
    report.goto("file://" + saved)
    report.wait_for_selector("section.charts figure.chart path.line")
    measured["report_charts"] = report.locator("section.charts figure.chart").count()
    measured["report_lines"] = report.locator("section.charts path.line").count()
    shot(report, "7-html-report-offline")

    # The cluster page marks the killed peer dead.
    page.click("a[data-view=cluster]")
    wait_until(
        page,
        """name => [...document.querySelectorAll('#peers tbody tr')]
            .some(r => r.cells[0].textContent.startsWith(name) && r.querySelector('[data-state=dead]'))""",
        args.kill_name,
        timeout=60_000,
    )
    shot(page, "8-cluster-peer-dead")
    page.click("a[data-view=results]")
    page.wait_for_selector("a[data-result]")
    shot(page, "9-results")


if __name__ == "__main__":
    main()
