"""The local colony serves the process page that "ColonyOS process" links point at."""

from __future__ import annotations

import httpx

from pollinator.run import Job


def test_process_page_shows_state_and_log_and_masks_secrets(settings, tmp_path):
    with Job.inline(settings, name="dash", cmd="echo '<b>hello</b> dashboard'", executor_names=["dev-k8s"],
                    env={"API_TOKEN": "do-not-show-me"}, result_dir=tmp_path) as job:
        result = job.run()
    page = httpx.get(result.dashboard_url, timeout=10)
    assert page.status_code == 200
    assert "SUCCESS" in page.text
    assert "&lt;b&gt;hello&lt;/b&gt; dashboard" in page.text  # escaped, not rendered
    assert "do-not-show-me" not in page.text
    index = httpx.get(settings.dashboard_url + "/", timeout=10)
    assert result.process_id[:12] in index.text


def test_unknown_process_page(settings):
    page = httpx.get(settings.dashboard_url + "/process?processid=nope", timeout=10)
    assert "not found" in page.text.lower()
