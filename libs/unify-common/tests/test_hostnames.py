"""The one host-name rule (pure table), and the tag parser judging dns=/vhost= by it."""

from __future__ import annotations

import pytest

from unify_common.hostnames import hostname_problem, name_error
from unify_common.tags import TagError, parse_tags

#: a valid name of exactly 253 characters (three 63-character labels and one of 61)
NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


@pytest.mark.parametrize(("name", "problem"), [
    pytest.param("web.example.com", None, id="plain"),
    pytest.param("a", None, id="one-label"),
    pytest.param(NAME_253, None, id="253-long"),
    pytest.param("x" + NAME_253, "is 254 characters long; at most 253 are allowed",
                 id="254-long"),
    pytest.param("a" * 63 + ".com", None, id="63-label"),
    pytest.param("a" * 64 + ".com", "has a label of 64 characters; at most 63 are allowed",
                 id="64-label"),
    pytest.param("a..com", "must be letters, digits and '-' in dot-separated labels",
                 id="empty-label"),
    pytest.param("-a.com", "must be letters, digits and '-' in dot-separated labels",
                 id="leading-hyphen"),
    pytest.param("a_b.com", "must be letters, digits and '-' in dot-separated labels",
                 id="underscore"),
    pytest.param("a" * 100_000, "is 100000 characters long; at most 253 are allowed",
                 id="huge"),
])
def test_hostname_problem(name, problem):
    assert hostname_problem(name) == problem


def test_name_error_names_the_name_cut_short():
    assert name_error("web.example.com") is None
    assert name_error("x" + NAME_253) == (
        "name '" + ("x" + NAME_253)[:57] + "...' is 254 characters long; at most 253 are "
        "allowed")


def test_a_valid_253_character_domain_is_a_valid_dns_tag():
    assert parse_tags([f"dns={NAME_253.upper()}"]).dns == (NAME_253,)


@pytest.mark.parametrize(("tags", "message"), [
    pytest.param([f"dns=x{NAME_253}"], f"tag '{('dns=x' + NAME_253)[:77]}...': dns is 254 "
                 "characters long; at most 253 are allowed", id="dns-254"),
    pytest.param(["dns=example.com", "vhost=" + "v" * 64], f"tag '{'vhost=' + 'v' * 64}': "
                 "vhost has a label of 64 characters; at most 63 are allowed", id="vhost-label"),
    pytest.param(["url_prefix=/" + "p" * 300], f"tag '{('url_prefix=/' + 'p' * 300)[:77]}...': "
                 "longer than 256 characters", id="other-keys-keep-the-tag-cap"),
])
def test_names_are_judged_on_the_name(tags, message):
    with pytest.raises(TagError) as err:
        parse_tags(tags)
    assert str(err.value) == message
