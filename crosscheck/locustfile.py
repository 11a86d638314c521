"""Minigram's default mix for Locust: the outside generator the lab's own
(loadtests, Goose) is checked against (crosscheck/README.md).

It reproduces loadtests/src/journeys/mod.rs and requests.rs, visit for
visit, so that both generators send the same requests in the same shares:

- one visit in 100 is a newcomer (register, follow 3 popular accounts, read
  the feed, like, upload a small PNG); of the rest, 7 in 10 are returning
  people and 3 in 10 lurkers;
- a returning visit takes a person with a lasting session from the pool
  (people signed in before the load, crosscheck/ladder.py), signs in again
  only 1 time in 50, reads the feed, reads it again and scrolls to the
  second page, likes a photo from it, follows someone 1 visit in 10,
  uploads 1 in 20, and logs out 1 in 50 (not when the person is in
  another visit at the same time);
- a lurker reads explore, a profile and a photo, signed out;
- think times of 200-800 ms between a person's actions and between visits
  (the closed model, `loadtests breaking --users`).

Request names are the lab's (loadtests/src/journeys/name.rs), so the SLO
classes are the same: GET is a read, register and login are sign-ins, the
rest are writes. Run it by itself with
`locust -f crosscheck/locustfile.py --host http://127.0.0.1:8080`, or
through crosscheck/ladder.py, which searches its breaking point.
"""

import os
import random
import struct
import zlib

import gevent
from locust import FastHttpUser, between, task

SEED_PASSWORD = "minigram-password"  # shared/src/seed.rs
NEWCOMER_PASSWORD = "load-test-password"
SEEDED_USERS = int(os.environ.get("MINIGRAM_SEEDED_USERS", "10000"))
THINK = (0.2, 0.8)
NEWCOMER_SHARE, SIGNED_OUT_SHARE, LOGOUT_SHARE = 0.01, 0.02, 0.02
FOLLOW_EVERY, UPLOAD_EVERY = 10, 20

# The people who come back: {"username", "password", "token", "userId",
# "busy"}; filled by ladder.py before the load, outliving each step.
POOL = []


def small_png(width=96, height=72):
    """A small generated RGB PNG, like the lab's 96 x 72 upload."""
    rows = b"".join(
        b"\x00" + bytes((x * 3 + y * 5) % 256 for x in range(width) for _ in range(3))
        for y in range(height)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PHOTO = small_png()


def think():
    gevent.sleep(random.uniform(*THINK))


class Person(FastHttpUser):
    """One simulated user: visits one after another, thinking between."""

    wait_time = between(*THINK)

    def call(self, method, path, name, expect, check=None, token="", **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kw
        ) as r:
            if r.status_code not in expect:
                r.failure(f"{name}: expected {expect}, got {r.status_code}")
                return None
            if r.status_code == 204:
                return {}
            try:
                body = r.json()
            except ValueError:
                r.failure(f"{name}: body is not JSON")
                return None
            if check and not check(body):
                r.failure(f"{name}: unexpected body")
                return None
            return body

    @task
    def visit(self):
        x = random.random()
        if x < NEWCOMER_SHARE:
            self.newcomer()
        elif random.random() < 0.7:
            self.returning()
        else:
            self.lurker()

    # -- requests -------------------------------------------------------

    def login(self, username, password):
        return self.call(
            "POST", "/api/login", "POST /api/login", (200,), signed_in,
            json={"username": username, "password": password},
        )

    def read_feed(self, token):
        return self.call("GET", "/api/feed?limit=10", "GET /api/feed", (200,), page, token)

    def like(self, token, seen):
        pid = random.choice(seen) if seen else 1
        return self.call(
            "POST", f"/api/photos/{pid}/like", "POST /api/photos/{id}/like", (200,),
            lambda b: b.get("liked") is True, token,
        )

    def follow_popular(self, token, me, n):
        for _ in range(n):
            target = random.randint(1, min(max(SEEDED_USERS, 1), 20))
            if target == me:
                continue
            if self.call(
                "POST", f"/api/users/{target}/follow", "POST /api/users/{id}/follow",
                (200,), lambda b: b.get("following") is True, token,
            ) is None:
                return False
        return True

    def upload(self, token):
        return self.call(
            "POST", "/api/photos", "POST /api/photos", (201, 202),
            lambda b: isinstance(b.get("id"), int), token,
            files={"photo": ("lt.png", PHOTO, "image/png")},
            data={"caption": "load test"},
        )

    # -- visits ---------------------------------------------------------

    def newcomer(self):
        name = f"lc{random.getrandbits(40):x}"
        me = self.call(
            "POST", "/api/register", "POST /api/register", (201,), signed_in,
            json={"username": name, "password": NEWCOMER_PASSWORD},
        )
        if me is None:
            return
        person = {"username": name, "password": NEWCOMER_PASSWORD,
                  "token": me["token"], "userId": me["userId"], "busy": 1}
        POOL.append(person)
        try:
            token = me["token"]
            think()
            if not self.follow_popular(token, me["userId"], 3):
                return
            think()
            feed = self.read_feed(token)
            if feed is None:
                return
            think()
            if self.like(token, ids(feed)) is None:
                return
            think()
            self.upload(token)
        finally:
            person["busy"] -= 1

    def returning(self):
        if not POOL:
            raise RuntimeError("no people signed in before the load (ladder.py signs them in)")
        person = random.choice(POOL)
        person["busy"] += 1
        try:
            if random.random() < SIGNED_OUT_SHARE or not person["token"]:
                me = self.login(person["username"], person["password"])
                if me is None:
                    return
                person["token"], person["userId"] = me["token"], me["userId"]
                think()
            token = person["token"]
            if self.read_feed(token) is None:
                return
            think()
            first = self.read_feed(token)
            if first is None:
                return
            seen = ids(first)
            if first.get("next"):  # the second page at once, as a scroll
                older = self.call(
                    "GET", f"/api/feed?limit=10&before={first['next']}",
                    "GET /api/feed?before", (200,), page, token,
                )
                if older is None:
                    return
                seen = ids(older) or seen
            think()
            if self.like(token, seen) is None:
                return
            if random.randrange(FOLLOW_EVERY) == 0:
                think()
                if not self.follow_popular(token, person["userId"], 1):
                    return
            if random.randrange(UPLOAD_EVERY) == 0:
                think()
                if self.upload(token) is None:
                    return
            if random.random() < LOGOUT_SHARE and person["busy"] <= 1:
                person["token"] = ""
                think()
                self.call("POST", "/api/logout", "POST /api/logout", (204,), None, token)
        finally:
            person["busy"] -= 1

    def lurker(self):
        explore = self.call("GET", "/api/explore?limit=20", "GET /api/explore", (200,), page)
        if explore is None:
            return
        think()
        n = random.randint(1, max(SEEDED_USERS, 1))
        if self.call(
            "GET", f"/api/users/{n}", "GET /api/users/{id}", (200,),
            lambda b: b.get("id") == n,
        ) is None:
            return
        seen = ids(explore)
        if seen:
            think()
            self.call(
                "GET", f"/api/photos/{seen[0]}", "GET /api/photos/{id}", (200,),
                lambda b: b.get("id") == seen[0],
            )


def signed_in(body):
    return len(body.get("token") or "") == 64 and isinstance(body.get("userId"), int)


def page(body):
    photos = body.get("photos")
    return isinstance(photos, list) and all(isinstance(p.get("id"), int) for p in photos)


def ids(body):
    return [p["id"] for p in body.get("photos", []) if isinstance(p.get("id"), int)]
