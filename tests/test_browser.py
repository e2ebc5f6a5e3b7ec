"""A real browser against ``live_server``: Debian's Chromium driven by Selenium through
``/usr/bin/chromedriver`` (``.ci/run`` installs both with apt-get).

An operator logs into the Django admin, filters the task list by status and cancels a task
with the "Cancel selected tasks" action; reads the dashboard's charts (drawn from real work,
refreshed in place) and a task's page with its buttons, and the task list fits a 1366 px
screen; a reviewer approves a waiting task on the demo's review page. Waits are explicit (a
condition polled up to a bound), never timing thresholds.

With ``ASYNCQUEUE_SCREENSHOTS`` set to a directory, the dashboard and task-page screenshots are
saved there (``docs/screenshots/`` holds the README's).

Outside CI a missing browser, driver or selenium skips these tests, saying what to install;
on CI (``CI`` set) it fails them instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import requests
from demo.models import Review, ReviewStatus
from django.contrib.auth import get_user_model

from asyncqueue_django import services
from asyncqueue_django.models import Task
from tests.worker import Worker, wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ON_CI = bool(os.environ.get("CI"))
WAIT = 30  # seconds an explicit wait may take before the test fails
PASSWORD = "correct-horse-battery-staple"


def _unavailable(reason: str) -> NoReturn:
    if ON_CI:
        pytest.fail(f"{reason}; the browser test must run on CI (.ci/run installs it)")
    pytest.skip(f"{reason} (apt-get install -y chromium chromium-driver; pip install selenium)")


def _executable(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        _unavailable(f"{name} is not installed")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    try:
        from selenium import webdriver
    except ImportError:
        _unavailable("selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium")
    profile: Path = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",  # live_server is local; never route it through a proxy
        f"--user-data-dir={profile}",
        "--window-size=1280,1024",
    ):
        options.add_argument(argument)
    # An explicit driver path: Selenium Manager is not asked to download anything.
    service = webdriver.ChromeService(executable_path=_executable("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def _until(driver: WebDriver, condition: Callable[[WebDriver], Any]) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(condition)


def _api_key(settings: Any) -> str:
    team = services.get_or_create_team("demo")[0]
    key = services.create_api_key(team, "browser test").raw_key
    settings.DEMO_API_KEY = key
    settings.DEMO_TEAM = "demo"
    settings.DEMO_WEBHOOK_SECRETS = []
    settings.DEMO_BASE_URL = ""
    return key


def _create(live_server: Any, key: str, **fields: Any) -> str:
    response = requests.post(
        f"{live_server.url}/v1/tasks",
        json=fields,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task"]["id"]
    return task_id


def test_admin_filters_by_status_and_cancels_a_task(
    browser: WebDriver, live_server: Any, settings: Any, celery_worker: Worker
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    key = _api_key(settings)
    target = f"{live_server.url}/demo/api/convert-video"
    done = _create(live_server, key, targetUrl=target, payload={"videoId": "now"})
    to_cancel = _create(live_server, key, targetUrl=target, payload={"videoId": "a"}, delay=3600)
    to_keep = _create(live_server, key, targetUrl=target, payload={"videoId": "b"}, delay=3600)
    wait_for(lambda: Task.objects.filter(pk=done, status="completed").exists())

    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/asyncqueue/task/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    _until(browser, ec.presence_of_element_located((By.ID, "result_list")))
    assert done in browser.page_source  # every status before filtering

    browser.find_element(
        By.XPATH, "//*[@id='changelist-filter']//a[normalize-space()='Delayed']"
    ).click()
    _until(browser, ec.url_contains("status__exact=delayed"))
    _until(browser, ec.presence_of_element_located((By.ID, "result_list")))
    listed = browser.find_element(By.ID, "result_list").text
    assert to_cancel in listed
    assert to_keep in listed
    assert done not in listed

    browser.find_element(By.CSS_SELECTOR, f"input.action-select[value='{to_cancel}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_visible_text("Cancel selected tasks")
    browser.find_element(By.CSS_SELECTOR, "button[name='index']").click()
    message = _until(
        browser, ec.visibility_of_element_located((By.CSS_SELECTOR, ".messagelist .success"))
    )
    assert "Cancelled 1 task" in message.text

    assert Task.objects.get(pk=to_cancel).status == "cancelled"
    assert Task.objects.get(pk=to_keep).status == "delayed"


def test_demo_review_page_approves_a_waiting_task(
    browser: WebDriver, live_server: Any, settings: Any, celery_worker: Worker
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _api_key(settings)
    browser.delete_all_cookies()

    # The demo client creates the waitForSignal task and keeps its token.
    browser.get(f"{live_server.url}/demo/")
    field = browser.find_element(By.ID, "id_documentId")
    field.clear()
    field.send_keys("doc_browser")
    browser.find_element(By.CSS_SELECTOR, "#review-form button[type=submit]").click()
    _until(browser, ec.url_contains("/demo/reviews/"))
    review = Review.objects.get(document_id="doc_browser")
    task_id = review.task_id
    assert task_id is not None
    wait_for(lambda: Task.objects.filter(pk=task_id, status="waiting").exists())

    row = "tr[data-document='doc_browser']"

    def listed(driver: WebDriver) -> bool:
        driver.refresh()  # the page lists a review once its callback has arrived
        return bool(driver.find_elements(By.CSS_SELECTOR, row))

    browser.get(f"{live_server.url}/demo/reviews/")
    _until(browser, listed)
    browser.find_element(By.CSS_SELECTOR, f"{row} button[value='approve']").click()
    message = _until(
        browser, ec.visibility_of_element_located((By.CSS_SELECTOR, ".messages .success"))
    )
    assert "doc_browser: approved" in message.text
    assert not browser.find_elements(By.CSS_SELECTOR, row)

    assert Task.objects.get(pk=task_id).status == "completed"
    assert Review.objects.get(pk=review.pk).status == ReviewStatus.APPROVED


def _login(browser: WebDriver, live_server: Any, next_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next={next_url}")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()


def _screenshot(browser: WebDriver, tmp_path: Path, name: str) -> Path:
    """A screenshot of the whole page (the window grown to the page's height)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1366, min(max(int(height) + 150, 700), 2400))
    folder = Path(os.environ.get("ASYNCQUEUE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_dashboard_and_task_page_show_the_work(
    browser: WebDriver, live_server: Any, settings: Any, celery_worker: Worker, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    key = _api_key(settings)
    good = f"{live_server.url}/demo/api/convert-video"
    bad = f"{live_server.url}/demo/api/no-such-target"
    created = [
        _create(live_server, key, targetUrl=good, payload={"videoId": f"v{i}"}) for i in range(8)
    ]
    created += [
        _create(live_server, key, targetUrl=bad, payload={"i": i}, maxRetries=0, queue="low")
        for i in range(3)
    ]
    waiting = _create(
        live_server,
        key,
        targetUrl=good,
        payload={"videoId": "w"},
        waitForSignal=True,
        maxWaitTime=1800,
    )
    for i in range(2):
        _create(
            live_server, key, targetUrl=good, payload={"videoId": f"d{i}"}, delay=3600, queue="low"
        )
    wait_for(
        lambda: (
            Task.objects.filter(pk__in=created, status__in=["completed", "failed"]).count()
            == len(created)
            and Task.objects.filter(pk=waiting, status="waiting").exists()
        ),
        timeout=WAIT,
    )

    browser.set_window_size(1366, 900)
    _login(browser, live_server, "/admin/asyncqueue/dashboard/?hours=1&refresh=2")
    _until(browser, ec.presence_of_element_located((By.ID, "aq-dashboard")))
    bars = browser.find_elements(By.CSS_SELECTOR, "#aq-throughput svg rect.aq-bar")
    assert bars, "the throughput chart has no bars"
    assert all(b.size["height"] > 0 for b in bars)
    line = browser.find_element(By.CSS_SELECTOR, "#aq-throughput svg polyline.aq-line")
    assert len(line.get_attribute("points").split()) > 10
    latency = browser.find_elements(
        By.CSS_SELECTOR, "#aq-latency svg polyline, #aq-latency svg circle"
    )
    assert latency, "the latency chart has no points"
    queues = browser.find_element(By.ID, "aq-queues").text
    assert "low" in queues
    assert "default" in queues
    assert browser.find_elements(By.CSS_SELECTOR, "#aq-waiting svg rect.aq-bar")
    # The charts refresh in place: no reload, and the stamp says when.
    browser.execute_script("window.aqMarker = 1")
    _until(browser, ec.text_to_be_present_in_element((By.ID, "aq-updated"), "updated"))
    assert browser.execute_script("return window.aqMarker") == 1
    assert browser.find_elements(By.CSS_SELECTOR, "#aq-throughput svg rect.aq-bar")
    # Readable on a laptop: nothing scrolls sideways.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    _screenshot(browser, tmp_path, "dashboard.png")

    # The task list fits 1366 px with its filters: the last column is on screen.
    browser.set_window_size(1366, 900)
    browser.get(f"{live_server.url}/admin/asyncqueue/task/")
    _until(browser, ec.presence_of_element_located((By.ID, "result_list")))
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    finished = browser.find_element(By.CSS_SELECTOR, "#result_list th.column-finished_at")
    assert finished.is_displayed()
    assert browser.execute_script(
        "return arguments[0].getBoundingClientRect().right <= window.innerWidth", finished
    )
    first_id = browser.find_element(By.CSS_SELECTOR, "#result_list code.aq-id")
    assert first_id.size["width"] < 120  # the id is clipped ...
    assert len(first_id.get_attribute("title")) == 36  # ... and whole on hover

    browser.get(f"{live_server.url}/admin/asyncqueue/task/{waiting}/change/")
    _until(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".object-tools")))
    buttons = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "button.aq-page-action")]
    assert [b.lower() for b in buttons] == ["cancel", "complete…", "fail…"]
    assert "convert-video" in browser.page_source
    _screenshot(browser, tmp_path, "task-page.png")
    browser.set_window_size(1366, 900)
    browser.find_element(
        By.XPATH, "//button[normalize-space()='Complete…' or normalize-space()='COMPLETE…']"
    ).click()
    _until(browser, ec.presence_of_element_located((By.NAME, "result")))
    browser.find_element(By.NAME, "result").send_keys('{"approved": true}')
    browser.find_element(By.CSS_SELECTOR, "#content form input[type=submit]").click()
    message = _until(
        browser, ec.visibility_of_element_located((By.CSS_SELECTOR, ".messagelist .success"))
    )
    assert "Completed 1 waiting task" in message.text
    assert Task.objects.get(pk=waiting).status == "completed"
    browser.set_window_size(1280, 1024)
