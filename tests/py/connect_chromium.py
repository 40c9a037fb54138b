"""The connect happy path in a real headless Chromium (selenium + chromedriver).

    connect_chromium.py URL --login NAME --profile DIR

Opens URL (a sidekey connect link), signs in at the oidc-provider development login
form as NAME, confirms its consent form, and waits for sidekey's result page. Prints
one JSON object: the final url, title and page source.
"""
import argparse
import json
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--login", default="alice")
    ap.add_argument("--profile", required=True)
    a = ap.parse_args()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={a.profile}", "--no-proxy-server"]:
        opts.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(a.url)
        login = wait.until(EC.presence_of_element_located((By.NAME, "login")))
        login.send_keys(a.login)
        driver.find_element(By.NAME, "password").send_keys("any")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "input[name=prompt][value=consent]")))
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "main[data-sidekey-connect]")))
        print(json.dumps({"url": driver.current_url, "title": driver.title, "source": driver.page_source}))
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
