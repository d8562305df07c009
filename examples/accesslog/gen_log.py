#!/usr/bin/env python3
"""A seeded Apache access log in the combined format (same bytes on every machine): one day of
requests from a few dozen clients (documentation addresses), mostly 200s, some 304s (no
body: `-` bytes), 404s and a burst of 500s. Usage: gen_log.py LINES > access.log"""
import random
import sys
from datetime import datetime, timedelta, timezone

PATHS = ["/", "/index.html", "/about", "/blog", "/blog/feed.xml", "/img/logo.png",
         "/css/site.css", "/js/app.js", "/api/search?q=hadoop", "/api/items/42", "/download"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.4.0", "Wget/1.21",
          "Mozilla/5.0 (compatible; Googlebot/2.1)"]


def status(rnd: random.Random, hour: int) -> int:
    if hour == 14 and rnd.random() < 0.3:
        return 500  # the afternoon something broke
    return rnd.choices([200, 304, 404, 301], [80, 10, 7, 3])[0]


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rnd = random.Random(2024)
    clients = [f"{net}.{rnd.randint(1, 254)}" for net in ("192.0.2", "198.51.100", "203.0.113")
               for _ in range(12)]
    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    for i in range(lines):
        t = start + timedelta(seconds=i * 86400 // lines + rnd.randint(0, 9))
        code = status(rnd, t.hour)
        size = "-" if code == 304 else str(rnd.randint(200, 90000))
        path = rnd.choice(PATHS)
        print(f'{rnd.choice(clients)} - - [{t:%d/%b/%Y:%H:%M:%S +0000}] "GET {path} HTTP/1.1" '
              f'{code} {size} "-" "{rnd.choice(AGENTS)}"')


main()
