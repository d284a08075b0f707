"""Shared fixtures: the embedded data, and the notebooks' clean_weather.csv when it is there."""

from pathlib import Path

import pytest

from rnnlab.tables import DEFAULT_DATA_PATH, load_csv
from rnnlab.windows import prepare

CLEAN_WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "clean_weather.csv"


@pytest.fixture(scope="session")
def seattle_table():
    return load_csv(DEFAULT_DATA_PATH)


@pytest.fixture(scope="session")
def seattle_prepared(seattle_table):
    return prepare(seattle_table, target="temp_max", lookback=7, horizon=1)


@pytest.fixture(scope="session")
def clean_weather_path():
    if not CLEAN_WEATHER.exists():
        pytest.skip("../shared/data/clean_weather.csv is not on this machine")
    return CLEAN_WEATHER
