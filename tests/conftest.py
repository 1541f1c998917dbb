import gin
import pytest


@pytest.fixture(autouse=True)
def clean_gin():
    """Each test starts from an empty gin configuration."""
    gin.clear_config()
    yield
    gin.clear_config()
