"""The benchmarks' bare-insert baseline (bench/baseline.py) is not part of the service unless asked for."""

import importlib

import pytest
from django.urls import Resolver404, clear_url_caches, resolve

import config.urls

BASELINE = "/bench/baseline/appointments/"


@pytest.fixture
def reload_urls():
    """Re-import config.urls under the settings in force; restore the default routes afterwards."""

    def reload():
        clear_url_caches()
        importlib.reload(config.urls)

    yield reload
    reload()


def test_the_baseline_is_off_by_default(settings):
    assert settings.BENCH_ENDPOINTS is False
    with pytest.raises(Resolver404):
        resolve(BASELINE)
    assert not any("bench" in str(pattern.pattern) for pattern in config.urls.urlpatterns)


def test_a_post_to_the_baseline_path_is_a_404_by_default(client):
    response = client.post(BASELINE, data={}, content_type="application/json")

    assert response.status_code == 404


def test_the_baseline_is_mounted_only_with_bench_endpoints_on(settings, reload_urls):
    settings.BENCH_ENDPOINTS = True
    reload_urls()

    assert resolve(BASELINE).url_name == "baseline-appointments"

    settings.BENCH_ENDPOINTS = False
    reload_urls()
    with pytest.raises(Resolver404):
        resolve(BASELINE)
