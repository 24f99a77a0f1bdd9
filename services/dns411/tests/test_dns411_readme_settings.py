"""dns411's README settings table against the model (pure)."""

from __future__ import annotations

from pathlib import Path

from dns411.settings import Dns411Settings
from tests.fixtures.settings_docs import check_table, markdown_rows
from unify_common.settings import CommonSettings

#: documented in the README but read by another model or by a library (boto3)
OTHERS = {*CommonSettings.env_variables(), "CONSUL_HTTP_TOKEN_FILE", "NATS_PASSWORD_FILE",
          "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_ROUTE_53", "AWS_ENDPOINT_URL"}


def test_the_readme_table_matches_the_model():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    check_table(Dns411Settings, markdown_rows(readme), others=OTHERS)
