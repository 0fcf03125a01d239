"""Open a TensorBoard log root in a real browser, as a user does, and report
what the dashboards show.

Used by the Rust test tests/tb_browser.rs:
    .uorch/venv/bin/python tests/tb_browser.py LOGDIR --starts 3 --sessions 3 --runs 5 \
        --cards finetune/loss,finetune/examples_per_s [--screenshots DIR]

Each start runs the set-up venv's TensorBoard on LOGDIR (a fresh process on
a fresh port), loads `#hparams` in headless Chromium (selenium with Debian's
chromium and chromium-driver), waits until the HParams table lists
`--sessions` rows (or 90 s), and reads its column headers and rows; then
loads `#timeseries`, reads the run selector's names once it lists `--runs`
(or 60 s), filters the tags to exactly `--cards`, waits until those cards
are drawn (or 60 s), and reads the drawn cards' titles.
TensorBoard renders into shadow DOM (Polymer for HParams, whose table is a
vaadin-grid that slots its cells), so the page is read with JavaScript that
walks shadow roots, not from a DOM dump.

Prints {"starts": [{"headers": [...], "rows": [[...]], "runs": [...], "cards": [...]}],
"screenshots": [...]}. Exits 2, naming what is missing, when Chromium,
its driver or selenium cannot be found: it never passes silently.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def missing_tools():
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (Debian package chromium: make setup installs it)")
    if not os.access(DRIVER, os.X_OK):
        missing.append(f"{DRIVER} (Debian package chromium-driver: make setup installs it)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append(f"selenium in {sys.executable} (make setup installs it in the venv)")
    return missing


# The HParams table: vaadin-grid slots each cell's content into its light DOM,
# so a header or body cell is found through the slot names of the grid's rows.
READ_TABLE = """
function deepAll(root, sel) {
  let out = [...root.querySelectorAll(sel)];
  for (const el of root.querySelectorAll('*')) if (el.shadowRoot) out = out.concat(deepAll(el.shadowRoot, sel));
  return out;
}
const views = deepAll(document, 'tf-hparams-table-view');
if (!views.length || !views[0].shadowRoot) return null;
const grid = views[0].shadowRoot.querySelector('vaadin-grid');
if (!grid || !grid.shadowRoot) return null;
const cell = (s) => { const c = grid.querySelector('[slot="' + s.name + '"]'); return c ? c.textContent.trim() : ''; };
const rows = (part) => [...grid.shadowRoot.querySelectorAll(part + ' tr')]
  .filter(tr => !tr.hidden)
  .map(tr => [...tr.querySelectorAll('slot')].map(cell));
return {headers: rows('thead')[0] || [], rows: rows('tbody').filter(r => r.length && r[0] !== '')};
"""

# The runs the time series list (the run selector's names).
READ_RUNS = """
return [...document.querySelectorAll('runs-selector tb-data-table-content-cell.table-column-run')]
  .map(e => e.textContent.trim());
"""

# The time series cards drawn (visible) now, by title.
READ_CARDS = """
const seen = [...document.querySelectorAll('card-view .heading')]
  .filter(e => e.offsetParent !== null).map(e => e.textContent.trim());
return [...new Set(seen)];
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tensorboard(logdir, log):
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    proc = subprocess.Popen([exe, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 60:
        if proc.poll() is not None:
            raise SystemExit(f"tensorboard exited with {proc.returncode} before serving {url}")
        try:
            urllib.request.urlopen(url + "/data/logdir", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"tensorboard did not serve {url} within 60 s")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"]:
        o.add_argument(a)
    o.binary_location = CHROMIUM
    return webdriver.Chrome(service=Service(DRIVER), options=o)


def until(what, seconds, done):
    """Poll `what()` until `done(value)` or the time is up; the last value."""
    t0 = time.time()
    value = what()
    while not done(value) and time.time() - t0 < seconds:
        time.sleep(0.5)
        value = what()
    return value


def one_start(logdir, sessions, expect_runs, cards, shots, log):
    proc, url = start_tensorboard(logdir, log)
    d = browser()
    try:
        d.get(url + "/#hparams")
        table = until(lambda: d.execute_script(READ_TABLE), 90,
                      lambda t: t is not None and len(t["rows"]) >= sessions) or {"headers": [], "rows": []}
        if shots:
            d.save_screenshot(os.path.join(shots, "hparams.png"))
        d.get(url + "/#timeseries")
        runs = until(lambda: d.execute_script(READ_RUNS), 60, lambda r: len(r) >= expect_runs)
        box = until(lambda: d.execute_script("return document.querySelector('input[placeholder^=\"Filter tags\"]')"),
                    60, lambda b: b is not None)
        drawn = []
        if box is not None:
            box.send_keys("^(" + "|".join(cards) + ")$")
            # Cards are drawn only where they are in view: a tall window shows them all.
            d.set_window_size(1600, 600 + 420 * ((len(cards) + 2) // 3))
            drawn = until(lambda: d.execute_script(READ_CARDS), 60, lambda c: set(cards) <= set(c))
            d.set_window_size(1600, 1000)
        if shots:
            # Close the tag suggestions and the settings pane, which hide the cards.
            d.execute_script("""
                document.activeElement && document.activeElement.blur();
                const close = document.querySelector('button[aria-label="Close side pane"]');
                if (close) close.click();""")
            time.sleep(1.5)
            d.save_screenshot(os.path.join(shots, "timeseries.png"))
        return {"headers": table["headers"], "rows": table["rows"], "runs": runs, "cards": drawn}
    finally:
        d.quit()
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logdir")
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--runs", type=int, required=True, help="how many runs the time series must list")
    ap.add_argument("--cards", required=True, help="comma-separated scalar tags")
    ap.add_argument("--screenshots", help="folder for hparams.png and timeseries.png (first start)")
    a = ap.parse_args()
    missing = missing_tools()
    if missing:
        print("tb_browser: cannot run the browser test, missing: " + "; ".join(missing), file=sys.stderr)
        sys.exit(2)
    if a.screenshots:
        os.makedirs(a.screenshots, exist_ok=True)
    cards = a.cards.split(",")
    starts = []
    # TensorBoard's own output, kept for a failure's diagnosis.
    with tempfile.NamedTemporaryFile("w", prefix="tb_browser_", suffix=".log", delete=False) as log:
        print(f"tb_browser: TensorBoard's output goes to {log.name}", file=sys.stderr)
        for i in range(a.starts):
            starts.append(one_start(a.logdir, a.sessions, a.runs, cards, a.screenshots if i == 0 else None, log))
    shots = [os.path.join(a.screenshots, f) for f in ("hparams.png", "timeseries.png")] if a.screenshots else []
    print(json.dumps({"starts": starts, "screenshots": shots}))


if __name__ == "__main__":
    main()
