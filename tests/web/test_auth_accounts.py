"""The account tables on a real store: session expiry and idleness, revocation, keys, the
admin token's key, lockout counting."""

from __future__ import annotations

from pathlib import Path

from hathd.store import open_store
from hathd.web import accounts


async def test_sessions_end_by_lifetime_idleness_and_revocation(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite") as store:
        await accounts.migrate(store)
        hashed = accounts.hash_password("a long password")
        uid = await store.write(lambda c: accounts.create_first_admin(c, "admin", hashed, 0.0))
        assert uid is not None
        assert await store.write(lambda c: accounts.create_first_admin(c, "x", hashed, 0.0)) is None
        t0 = 1000.0
        new = await store.write(lambda c: accounts.create_session(c, uid, "::1", "ua", t0))
        idle = accounts.SESSION_IDLE

        async def touch(at: float) -> accounts.Session | None:
            return await store.write(lambda c: accounts.touch_session(c, new.token, at))

        found = await touch(t0 + idle - 1)
        assert found is not None
        assert (found.id, found.csrf_token, found.user.username) == (
            new.id,
            new.csrf_token,
            "admin",
        )
        # activity moved last_seen: still alive one idle period after the touch
        assert await touch(t0 + 2 * idle - 2) is not None
        assert await touch(t0 + 4 * idle) is None  # idle too long
        # lifetime: touched every hour it still ends after SESSION_LIFETIME
        other = await store.write(lambda c: accounts.create_session(c, uid, "::1", "ua", t0))
        at = t0
        while at < t0 + accounts.SESSION_LIFETIME - 3600:
            at += 3600
            assert await store.write(lambda c, at=at: accounts.touch_session(c, other.token, at))
        end = t0 + accounts.SESSION_LIFETIME
        assert await store.write(lambda c: accounts.touch_session(c, other.token, end)) is None
        third = await store.write(lambda c: accounts.create_session(c, uid, "::1", "ua", t0))
        assert await store.write(lambda c: accounts.revoke_session(c, third.id, uid))
        assert not await store.write(lambda c: accounts.revoke_session(c, third.id, uid))
        assert await store.write(lambda c: accounts.touch_session(c, third.token, t0)) is None
        rows = await store.query("SELECT token_hash FROM sessions")
        assert all(new.token not in row[0] for row in rows)


async def test_keys_and_the_admin_token(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite") as store:
        await accounts.migrate(store)
        await store.write(lambda c: accounts.register_token(c, "first-token", 1.0))
        owner = await store.write(lambda c: accounts.lookup_key(c, "first-token", 2.0))
        assert owner is not None
        assert (owner.id, owner.scope, owner.user) == (accounts.TOKEN_KEY_ID, "admin", None)
        # a rotated token file replaces the key at the next start
        await store.write(lambda c: accounts.register_token(c, "second-token", 3.0))
        assert await store.write(lambda c: accounts.lookup_key(c, "first-token", 4.0)) is None
        assert await store.write(lambda c: accounts.lookup_key(c, "second-token", 4.0))
        key_id, key = await store.write(lambda c: accounts.create_key(c, None, "k", "read", 5.0))
        listed = await store.read(accounts.list_keys)
        assert [k["id"] for k in listed] == [accounts.TOKEN_KEY_ID, key_id]
        assert all(key not in str(k) for k in listed)
        assert await store.write(lambda c: accounts.revoke_key(c, key_id))
        assert await store.write(lambda c: accounts.lookup_key(c, key, 6.0)) is None


async def test_failures_count_per_address_and_age_out(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite") as store:
        await accounts.migrate(store)
        delays = [
            await store.write(lambda c: accounts.record_failure(c, "192.0.2.1", 100.0))
            for _ in range(7)
        ]
        assert delays == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 4.0]
        assert await store.read(lambda c: accounts.locked_for(c, "192.0.2.1", 101.0)) == 3.0
        assert await store.read(lambda c: accounts.locked_for(c, "192.0.2.2", 101.0)) == 0.0
        later = 100.0 + accounts.LOCKOUT_MAX + 1
        again = await store.write(lambda c: accounts.record_failure(c, "192.0.2.1", later))
        assert again == 0.0
        await store.write(lambda c: accounts.clear_failures(c, "192.0.2.1"))
        assert await store.read(lambda c: accounts.locked_for(c, "192.0.2.1", later)) == 0.0


def test_scopes_and_passwords() -> None:
    assert accounts.scope_allows("admin", "control")
    assert accounts.scope_allows("control", "read")
    assert not accounts.scope_allows("read", "control")
    stored = accounts.hash_password("pässword long")
    assert stored.startswith("$argon2id$")
    assert accounts.verify_password(stored, "pässword long")
    assert not accounts.verify_password(stored, "password long")
    assert not accounts.verify_password("not a hash", "x")
