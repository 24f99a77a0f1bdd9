"""registry-admin's README settings table against the model (pure)."""

from __future__ import annotations

from pathlib import Path

from registry_admin.settings import RegistryAdminSettings
from tests.fixtures.settings_docs import check_table, markdown_rows
from unify_common.settings import CommonSettings

#: documented in the README but read by another model or by a library (the Docker SDK)
OTHERS = {*CommonSettings.env_variables(), "CONSUL_HTTP_TOKEN_FILE", "NATS_PASSWORD_FILE",
          "DOCKER_HOST"}


def test_the_readme_table_matches_the_model():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_table(RegistryAdminSettings, markdown_rows(readme), others=OTHERS)
