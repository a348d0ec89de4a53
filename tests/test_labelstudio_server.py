"""The test suite's Label Studio server answers its REST API with the admin's token, and a
scripted annotator gets an account and a token of its own."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_the_server_answers_with_its_version_and_knows_the_admin(label_studio):
    assert label_studio.request("GET", "/api/version")["release"] == "1.23.2"
    me = label_studio.request("GET", "/api/current-user/whoami")
    assert me["email"] == "admin@annoloop.test"


def test_an_annotator_signs_up_through_the_invite_link_and_has_its_own_token(label_studio):
    user_id, token = label_studio.annotator("careful@annoloop.test")
    assert token != label_studio.api_key
    assert label_studio.request("GET", "/api/current-user/whoami", token=token)["id"] == user_id
