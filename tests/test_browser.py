"""A real browser against ``live_server``: Debian's Chromium driven by Selenium through
``/usr/bin/chromedriver`` (``.ci/run`` installs both with apt-get).

An operator logs into the Django admin, filters the task list by status and cancels a task
with the "Cancel selected tasks" action; a reviewer approves a waiting task on the demo's
review page. Waits are explicit (a condition polled up to a bound), never timing thresholds.

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
