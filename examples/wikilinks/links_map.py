#!/usr/bin/env python3
"""What links here, mapper: `target<TAB>title` for each [[target]] link of each page.

With StreamXmlRecordReader each record is one <page>…</page>, newlines included, so the
mapper sees a page as several lines: it collects lines from <page> to </page> and reads the
title and links from the whole page. The serial pipeline hands it the whole file; the
wrapper around the pages is skipped the same way."""
import re
import sys

LINK = re.compile(r"\[\[([^\]|]+)(?:\|[^\]]*)?\]\]")
page: list[str] | None = None
for line in sys.stdin:
    if "<page>" in line:
        page = []
    if page is not None:
        page.append(line)
    if "</page>" in line and page is not None:
        text = "".join(page)
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        for target in sorted(set(LINK.findall(text))):
            print(f"{target}\t{title.group(1) if title else '?'}")
        page = None
