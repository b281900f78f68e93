"""The planners' console in a real browser (Debian's chromium through chromedriver, Selenium) against the real
alerts service, Kafka and InfluxDB: the page shows an episode the pipeline raised, a click acknowledges it and
the acknowledgement reaches the alerts topic and InfluxDB, the machine chart draws the points InfluxDB holds, a
viewer cannot acknowledge, a form without its CSRF token is refused. Screenshots go to ``.vigil/screenshots``."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from alerts.web.auth import hash_password
from vigil.config import AlertConfig, KafkaSettings, Topics, VigilConfig
from vigil.contracts import Alert, DriftEvent, FeatureVector
from vigil.influx import InfluxSink

from .test_alerts_service import NOW, STEP, T0, prediction, send

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).resolve().parents[3] / ".vigil" / "screenshots"
TOKEN = "console-t0ken-for-tests"
VIEWER_PASSWORD = "look-but-do-not-touch"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module (starting one takes a second or two)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install installs them)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.implicitly_wait(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def console_config(example: VigilConfig, kafka: KafkaSettings, topics: Topics, influx: Any, tmp: Path) -> VigilConfig:
    alerts = AlertConfig.model_validate(
        {
            "open_after": 2,
            "cooldown_s": 0,
            "http_port": 0,
            "outbox_path": str(tmp / "outbox.sqlite3"),
            "api_token": TOKEN,
            "users": [{"name": "Vera", "role": "viewer", "password_hash": hash_password(VIEWER_PASSWORD, n=2**10)}],
        }
    )
    return example.model_copy(update={"kafka": kafka, "topics": topics, "influx": influx.settings(), "alerts": alerts})


class Running:
    """The alerts service's loop on a thread (as ``vigil alerts`` runs it), its console at ``url``."""

    def __init__(self, config: VigilConfig, group: str) -> None:
        self.service = AlertService(config, group_id=group)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.service.setup()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.service.close()

    @property
    def url(self) -> str:
        return self.service.ack_url


def raise_an_alert(kafka: KafkaSettings, topics: Topics) -> None:
    """What the pipeline sends: feature windows and the model's predictions for PMP-001, rising past 0.5."""
    features = [
        FeatureVector(
            machine_id="PMP-001",
            machine_type="pump",
            site="north",
            line="north-1",
            window_start=T0 + (i - 1) * STEP,
            window_end=T0 + i * STEP,
            features={"bearing_temp.mean": 70.0 + 4 * i, "vibration_rms.max": 4.0 + 0.3 * i},
            count=10,
        )
        for i in range(6)
    ]
    send(kafka, topics.features, features)
    send(kafka, topics.predictions, [prediction(i, p) for i, p in enumerate([0.1, 0.3, 0.6, 0.7, 0.8, 0.85])])


def login(browser: Any, url: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/login")
    browser.find_element(By.NAME, "name").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_page(browser, lambda: browser.find_elements(By.ID, "who"))


def wait_page(browser: Any, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda _: condition())


def row_text(browser: Any, alert_id: str) -> str:
    """The episode's row on the Now page, read in one step (the live table may be replaced at any moment)."""
    text = browser.execute_script(
        "const r = document.querySelector(`tr[data-alert='${arguments[0]}']`); return r ? r.innerText : '';", alert_id
    )
    return str(text)


def open_episode(running: Running, wait_for: Any) -> str:
    wait_for(lambda: running.service.view.episodes, timeout=60)
    return str(running.service.view.episodes[0]["alert_id"])


def test_a_planner_sees_acknowledges_and_follows_up_in_the_browser(
    browser: Any,
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    unique: str,
    wait_for: Any,
    topic_reader: Any,
) -> None:
    from selenium.webdriver.common.by import By

    config = console_config(example_config, kafka_settings, topics, influx, tmp_path)
    alerts_topic = topic_reader(topics.alerts)
    with Running(config, f"alerts-{unique}") as running:
        raise_an_alert(kafka_settings, topics)
        drift = DriftEvent(
            machine_id="PMP-001",
            machine_type="pump",
            ts=T0 + 5 * STEP,
            detector="adwin",
            target="bearing_temp.mean",
            event="drift",
            detail="mean moved 70 -> 90",
            value=90.0,
        )
        send(kafka_settings, topics.drift, [drift])
        alert_id = open_episode(running, wait_for)

        # Now: the episode the pipeline raised, with its reason and what to check.
        login(browser, running.url, "Ann Planner", TOKEN)
        browser.get(running.url + "/")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-alert="{alert_id}"]')
        assert "Failure risk" in row.text and "PMP-001" in row.text and "north-1" in row.text
        assert "Bearing lubrication" in row.text, "what to check is on the page"
        browser.save_screenshot(str(SHOTS / "now.png"))

        # One click acknowledges it; the acknowledgement reaches the alerts topic and InfluxDB.
        row.find_element(By.CSS_SELECTOR, "button.ack-button").click()
        wait_page(
            browser,
            lambda: "ack: Ann Planner" in row_text(browser, alert_id),
        )
        wait_for(
            lambda: any(
                isinstance(m, Alert)
                and m.alert_id == alert_id
                and m.state.value == "acknowledged"
                and m.actor == "Ann Planner"
                for m in alerts_topic.read()
            )
        )
        sink = InfluxSink(influx.settings())
        acks = sink.query(
            f'SELECT "actor" FROM "alerts" WHERE "alert_id" = \'{alert_id}\' AND "status" = \'acknowledged\''
        )
        assert [r["actor"] for r in acks] == ["Ann Planner"]

        # Episode: its whole history, the acknowledgement included.
        browser.get(f"{running.url}/episodes/{alert_id}")
        history = browser.find_element(By.ID, "history").text
        assert "open" in history and "acknowledged" in history and "Ann Planner" in history
        assert browser.find_element(By.ID, "acked-by").text == "Ann Planner"
        browser.save_screenshot(str(SHOTS / "episode.png"))

        # Machine: the chart draws the points InfluxDB holds (predictions; the top sensors' feature windows).
        browser.get(f"{running.url}/machines/PMP-001?days=7")
        wait_page(browser, lambda: browser.find_element(By.ID, "charts").get_attribute("data-ready") == "1")
        start, end = (NOW - timedelta(days=8)).isoformat(), (NOW + timedelta(days=1)).isoformat()
        in_influx = sink.query(
            f"SELECT \"p_failure\" FROM \"predictions\" WHERE \"machine\" = 'PMP-001' AND time >= '{start}' AND time < '{end}'"
        )
        assert len(in_influx) == 6
        drawn = browser.execute_script(
            "return Array.from(document.querySelectorAll('#chart-risk .u-over')).length"
            " && JSON.parse(document.getElementById('series').textContent).risk.p_failure"
        )
        assert drawn == [r["p_failure"] for r in sorted(in_influx, key=lambda r: r["time"])]
        assert browser.find_element(By.ID, "chart-risk").get_attribute("data-drawn") == "6"
        sensor = browser.find_element(By.ID, "chart-sensor-0")
        assert sensor.get_attribute("data-drawn") == "6" and "bearing_temp.mean" in sensor.text
        browser.save_screenshot(str(SHOTS / "machine.png"))

        browser.get(f"{running.url}/fleet")
        tile = browser.find_element(By.CSS_SELECTOR, '[data-machine="PMP-001"]')
        assert "85%" in tile.text
        browser.save_screenshot(str(SHOTS / "fleet.png"))

        browser.get(f"{running.url}/quality?days=3650")
        assert "mean moved 70 -> 90" in browser.find_element(By.ID, "drift").text
        browser.save_screenshot(str(SHOTS / "quality.png"))


def test_a_viewer_cannot_acknowledge_and_a_form_without_its_csrf_token_is_refused(
    browser: Any,
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    unique: str,
    wait_for: Any,
) -> None:
    from selenium.webdriver.common.by import By

    config = console_config(example_config, kafka_settings, topics, influx, tmp_path)
    with Running(config, f"alerts-{unique}") as running:
        raise_an_alert(kafka_settings, topics)
        alert_id = open_episode(running, wait_for)

        # A notification's link to the episode: a login first, then straight to the episode.
        browser.delete_all_cookies()
        browser.get(f"{running.url}/episodes/{alert_id}")
        assert "/login" in browser.current_url, "the console needs a login when a token or users are configured"
        for password in ("wrong", VIEWER_PASSWORD):
            browser.find_element(By.NAME, "name").send_keys("Vera")
            browser.find_element(By.NAME, "password").send_keys(password)
            browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
            if password == "wrong":
                wait_page(browser, lambda: browser.find_elements(By.ID, "login-failed"))
        wait_page(browser, lambda: browser.find_elements(By.ID, "history"))
        assert browser.current_url.endswith(f"/episodes/{alert_id}")
        assert not browser.find_elements(By.ID, "ack-form"), "a viewer gets no forms"
        browser.get(f"{running.url}/")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-alert="{alert_id}"]')
        assert not row.find_elements(By.CSS_SELECTOR, "button.ack-button"), "a viewer gets no acknowledge button"
        # ... and the acknowledgement, posted anyway with the session's own CSRF token, is refused.
        status = browser.execute_script(
            "const csrf = document.querySelector('input[name=csrf]').value;"
            f"return fetch('/ui/alerts/{alert_id}/ack', {{method: 'POST', body: new URLSearchParams({{csrf, by: 'Vera'}})}})"
            ".then(r => r.status);"
        )
        assert status == 403
        assert TOKEN not in browser.page_source and "scrypt$" not in browser.page_source, "no secret on a page"

        # A planner's form without its CSRF token: refused, nothing acknowledged.
        browser.find_element(By.CSS_SELECTOR, "header form button").click()  # log out
        login(browser, running.url, "Ann Planner", TOKEN)
        browser.get(f"{running.url}/")
        browser.execute_script(
            f"const f = document.querySelector('tr[data-alert=\"{alert_id}\"] form.ack');"
            "f.querySelector('input[name=csrf]').remove(); f.submit();"
        )
        wait_page(browser, lambda: browser.find_elements(By.ID, "error"))
        assert "403" in browser.find_element(By.TAG_NAME, "h1").text
        for _ in range(3):  # give a wrongly accepted command time to be stored
            running.service.submit(lambda life, now: (None, [])).result(timeout=30)
        assert running.service.view.by_id[alert_id]["acknowledged_by"] is None

        # Live: the page open in the browser shows an acknowledgement made elsewhere, without a reload.
        browser.get(f"{running.url}/")
        browser.execute_script("window.notReloaded = true;")
        request = urllib.request.Request(
            f"{running.url}/alerts/{alert_id}/ack",
            data=json.dumps({"by": "Bob on the CLI"}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 200
        wait_page(
            browser,
            lambda: "ack: Bob on the CLI" in row_text(browser, alert_id),
        )
        assert browser.execute_script("return window.notReloaded === true;")
