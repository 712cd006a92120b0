"""The operator console in a real browser: headless Chromium (Debian's ``chromium``)
driven by Selenium through Debian's ``chromedriver``, against a real ``convdb console``.

Skipped, naming the reason, only where Chromium or its driver is not installed
(``make browser`` installs them as root; CI does). Every test takes a screenshot;
with ``CONVDB_SCREENSHOTS=DIR`` they are written there (docs/console/ holds the
ones docs/console.md shows), else under pytest's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from convdb.testing import query, scalar

from ..console_support import (
    PASSWORD,
    READONLY_PASSWORD,
    ConsoleProcess,
    drain,
    hostile_messages,
)
from ..support import fill, sms_events, status_counts

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [pytest.mark.one_server, pytest.mark.slow]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        f"{CHROMIUM} or {CHROMEDRIVER} is missing: `make browser` (as root) installs "
        "Debian's chromium and chromium-driver",
        allow_module_level=True,
    )

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def site(server, template_db):
    """A database with data to show, and a console process on it."""
    name = server.create(template=template_db)
    url = server.url(name)
    fill(url, sms_events(40, customers=2, contacts=8))
    drain(url)
    hostile_messages(url)
    fill(url, sms_events(3, prefix="dying"))
    query(
        url,
        "UPDATE inbound_events SET status = 'dead', attempts = 5, processed_at = now(), "
        "last_error = 'ConnectionError: the database went away (test)' WHERE status = 'pending'",
    )
    query(url, "ANALYZE inbound_events")  # the done estimate reads the planner's statistics
    console = ConsoleProcess(url)
    try:
        yield url, console.base_url
    finally:
        code = console.stop()
        server.drop(name)
        assert code == 0, console.output


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="convdb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("CONVDB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_in(driver, base: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/login")
    driver.find_element(By.ID, "password").send_keys(password)
    follow(driver, driver.find_element(By.ID, "login"))


def follow(driver, element) -> None:
    """Click ``element`` and wait for the page it leads to: click() may return once
    the request is sent, and the next command would race the answer (a session
    cookie not yet set, an element looked for on the old page)."""
    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(element))


def errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_login_and_a_wrong_password_is_refused(site, browser, shots):
    _, base = site
    log_in(browser, base, "wrong-password-0")
    assert "Wrong password" in browser.find_element(By.ID, "login-error").text
    browser.save_screenshot(str(shots / "login.png"))
    log_in(browser, base, PASSWORD)
    assert browser.current_url == base + "/queue"
    assert browser.find_element(By.ID, "role").text == "operator"


def test_the_queue_page_draws_its_chart(site, browser, shots):
    _, base = site
    log_in(browser, base, PASSWORD)
    chart = browser.find_element(By.ID, "throughput-chart")
    points = chart.find_elements(By.CSS_SELECTOR, "circle.point")
    assert len(points) == 180
    assert sum(int(p.get_attribute("data-value")) for p in points) > 0
    assert chart.size["width"] > 300 and chart.size["height"] > 100  # laid out, visible
    assert browser.find_element(By.ID, "count-dead").text == "3"
    browser.save_screenshot(str(shots / "queue.png"))


def test_open_a_dead_event_retry_it_and_see_it_done_after_the_worker(site, browser, shots):
    url, base = site
    log_in(browser, base, PASSWORD)
    browser.get(base + "/dead")
    browser.save_screenshot(str(shots / "dead.png"))
    first = browser.find_element(By.CSS_SELECTOR, "#dead-events tbody a")
    event_id = int(first.text)
    follow(browser, first)
    assert "ConnectionError" in browser.find_element(By.ID, "event-error").text
    assert '"customer": {' in browser.find_element(By.ID, "payload").text
    browser.save_screenshot(str(shots / "event.png"))
    follow(browser, browser.find_element(By.ID, "retry"))
    browser.save_screenshot(str(shots / "confirm.png"))
    follow(browser, browser.find_element(By.ID, "confirm"))
    assert browser.find_element(By.ID, "event-status").text == "pending"
    drain(url)
    browser.refresh()
    assert browser.find_element(By.ID, "event-status").text == "done"
    assert scalar(url, "SELECT status FROM inbound_events WHERE id = %s", (event_id,)) == "done"


def test_read_a_conversation(site, browser, shots):
    _, base = site
    log_in(browser, base, PASSWORD)
    browser.get(base + "/customers")
    follow(browser, browser.find_element(By.LINK_TEXT, "Customer 0"))
    browser.save_screenshot(str(shots / "customer.png"))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#inbox tbody a"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#messages tr.message")
    assert rows and all(r.find_element(By.CSS_SELECTOR, ".direction").text for r in rows)
    assert "message" in rows[0].find_element(By.CSS_SELECTOR, ".body").text
    browser.save_screenshot(str(shots / "conversation.png"))
    browser.get(base + "/endpoints")
    browser.save_screenshot(str(shots / "endpoints.png"))


def test_search_a_customers_messages_and_open_one(site, browser, shots):
    _, base = site
    log_in(browser, base, PASSWORD)
    browser.get(base + "/customers")
    follow(browser, browser.find_element(By.LINK_TEXT, "Customer 0"))
    browser.find_element(By.ID, "search-q").send_keys('"message 4"')
    follow(browser, browser.find_element(By.ID, "search-go"))
    assert "/search" in browser.current_url and "message" not in browser.current_url
    snippets = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .snippet")]
    assert snippets and all("message 4" in text for text in snippets)
    browser.save_screenshot(str(shots / "search.png"))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#results tbody a"))
    assert "/conversations/" in browser.current_url and "#message-" in browser.current_url


def test_read_only_login_has_no_buttons_and_its_forged_post_is_refused(site, browser, shots):
    url, base = site
    log_in(browser, base, READONLY_PASSWORD)
    assert browser.find_element(By.ID, "role").text == "read-only"
    dead_id = scalar(url, "SELECT min(id) FROM inbound_events WHERE status = 'dead'")
    for path in ("/queue", "/dead", f"/events/{dead_id}", "/dead/confirm?action=purge"):
        browser.get(base + path)
        buttons = browser.find_elements(By.CSS_SELECTOR, "button, a.button")
        # Logging out and filtering the list (a GET) are all that is left.
        assert {b.get_attribute("id") for b in buttons} <= {"logout", "filter"}, path
    browser.get(base + f"/events/{dead_id}")
    browser.save_screenshot(str(shots / "readonly.png"))
    csrf = browser.find_element(By.NAME, "csrf").get_attribute("value")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    forged = httpx.post(
        base + "/dead/act",
        data={"csrf": csrf, "action": "purge", "id": str(dead_id)},
        cookies=cookies,
        timeout=10,
    )
    assert forged.status_code == 403 and "read-only" in forged.text
    assert scalar(url, "SELECT status FROM inbound_events WHERE id = %s", (dead_id,)) == "dead"


def test_xss_payloads_do_not_execute(site, browser, shots):
    url, base = site
    log_in(browser, base, PASSWORD)
    browser.get_log("browser")  # drop what came before
    conversation = scalar(url, "SELECT id FROM conversations WHERE key = 'hostile'")
    customer = scalar(url, "SELECT customer_id FROM conversations WHERE key = 'hostile'")
    for path in (f"/conversations/{conversation}", f"/customers/{customer}", "/customers"):
        browser.get(base + path)
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - no dialog opened
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
        assert errors(browser) == [], path
    browser.get(base + f"/conversations/{conversation}")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "<img src=x onerror=alert(1)>" in page  # shown as text
    assert "</script><script>alert(2)</script>.png" in page
    browser.save_screenshot(str(shots / "xss.png"))
    assert status_counts(url)["dead"] >= 1
