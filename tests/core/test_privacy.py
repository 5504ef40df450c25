"""Customer keys: stable per shopper, unlinkable without the salt, never the email itself."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revloop.privacy import customer_key, customer_key_for_id

SALT = b"deployment-salt"
emails = st.emails()


@given(emails)
def test_the_same_shopper_gets_one_key_however_the_email_is_cased_or_padded(email: str) -> None:
    key = customer_key(SALT, email)
    assert customer_key(SALT, f"  {email.upper()}\n") == key
    assert key.startswith("ck_") and len(key) == 43


@given(emails, emails)
def test_different_emails_and_different_salts_give_different_keys(a: str, b: str) -> None:
    if a.casefold() != b.casefold():
        assert customer_key(SALT, a) != customer_key(SALT, b)
    assert customer_key(SALT, a) != customer_key(b"another-salt", a)


def test_id_keys_are_scoped_to_their_store_and_never_collide_with_email_keys() -> None:
    assert customer_key_for_id(SALT, "acme", "42") != customer_key_for_id(SALT, "other", "42")
    assert customer_key_for_id(SALT, "acme", "a@b.c") != customer_key(SALT, "a@b.c")


def test_no_salt_or_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="salt"):
        customer_key(b"", "ann@example.com")
    with pytest.raises(ValueError, match="email"):
        customer_key(SALT, "not-an-address")
