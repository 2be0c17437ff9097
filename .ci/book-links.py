#!/usr/bin/env python3
"""Checks the links of the built book and of the README.

    python3 .ci/book-links.py [BOOK_DIR] [MARKDOWN_FILE ...]

BOOK_DIR is what `mdbook build docs` wrote (default docs/book). In every HTML page there, each
relative link, image and stylesheet must name a file that exists, and each `#anchor` an id in
the page it points to. Each markdown file named (default README.md) is checked the same way: its
relative links and images resolve from its own folder, and an anchor on a link into docs/src/
must be an id of the page the book built from that file. A `{{#include ...}}` that mdBook could
not resolve is an error too. Links with a scheme (https:, mailto:) are not followed. Exits 1
with one line per broken link.
"""

import html.parser
import os
import re
import sys
import urllib.parse

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DOCS_SRC = os.path.join(ROOT, "docs", "src")


class Page(html.parser.HTMLParser):
    """The ids of one HTML document and the links in it."""

    LINK_ATTRIBUTES = {"href", "src"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (line, url)

    def handle_starttag(self, tag, attrs):
        if tag == "base":
            return  # 404.html's <base href="/">: the book's root, where 404.html already is
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name") and (name == "id" or tag == "a"):
                self.ids.add(value)
            elif name in self.LINK_ATTRIBUTES:
                self.links.append((self.getpos()[0], value))
            elif name == "srcset":
                for candidate in value.split(","):
                    if candidate.strip():
                        self.links.append((self.getpos()[0], candidate.split()[0]))

    handle_startendtag = handle_starttag


_parsed = {}


def parse_html(path):
    if path not in _parsed:
        page = Page()
        with open(path, encoding="utf-8") as f:
            page.feed(f.read())
        _parsed[path] = page
    return _parsed[path]


def is_external(url):
    parsed = urllib.parse.urlsplit(url)
    return bool(parsed.scheme) or url.startswith("//")


def check_target(base_dir, url, anchor_page_for, errors, where):
    """One relative URL from a file in base_dir. anchor_page_for maps a target file to the HTML
    page whose ids its anchors name (None: anchors are not checked)."""
    if is_external(url):
        return
    if url.startswith("/"):
        errors.append(f"{where}: {url}: a link from the site's root breaks where the book is served under a path")
        return
    parsed = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parsed.path)
    target = os.path.normpath(os.path.join(base_dir, path)) if path else None
    if target is not None:
        if os.path.isdir(target):
            index = os.path.join(target, "index.html")
            target = index if os.path.isfile(index) else target
        if not os.path.exists(target):
            errors.append(f"{where}: {url}: no such file")
            return
    if parsed.fragment:
        page = anchor_page_for(target)
        if page is None:
            return
        if not os.path.isfile(page):
            errors.append(f"{where}: {url}: no built page to hold the anchor ({os.path.relpath(page, ROOT)})")
            return
        fragment = urllib.parse.unquote(parsed.fragment)
        if fragment not in parse_html(page).ids:
            errors.append(f"{where}: {url}: no id \"{fragment}\" in {os.path.relpath(page, ROOT)}")


def check_book(book_dir, errors):
    pages = 0
    for folder, _, files in os.walk(book_dir):
        for name in files:
            if not name.endswith(".html"):
                continue
            path = os.path.join(folder, name)
            pages += 1
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for number, line in enumerate(text.splitlines(), 1):
                if "{{#" in line:
                    errors.append(f"{os.path.relpath(path, ROOT)}:{number}: an include mdBook left unresolved")
            page = parse_html(path)

            def anchor_page(target, current=path):
                target = target or current
                return target if target.endswith(".html") else None

            for number, url in page.links:
                check_target(folder, url, anchor_page, errors, f"{os.path.relpath(path, ROOT)}:{number}")
    if pages == 0:
        errors.append(f"{book_dir}: no HTML pages (run `mdbook build docs` first)")
    return pages


MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"\b(?:href|src|srcset)=\"([^\"]+)\"")
FENCE = re.compile(r"^\s*(```|~~~)")


def check_markdown(path, book_dir, errors):
    base_dir = os.path.dirname(os.path.abspath(path))

    def anchor_page(target):
        # A link into the book's sources: its anchors are the ids of the page built from it.
        if target is None:
            return None
        relative = os.path.relpath(target, DOCS_SRC)
        if relative.startswith("..") or not target.endswith(".md"):
            return None
        name = relative[: -len(".md")]
        if os.path.basename(name) == "README":
            name = os.path.join(os.path.dirname(name), "index")
        return os.path.join(book_dir, name + ".html")

    in_fence = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            if in_fence:
                continue
            line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
            urls = MARKDOWN_LINK.findall(line)
            for match in HTML_LINK.findall(line):
                urls.extend(candidate.split()[0] for candidate in match.split(",") if candidate.strip())
            for url in urls:
                if url.startswith("#"):
                    continue  # the README's own headings: GitHub's ids, not checked here
                check_target(base_dir, url, anchor_page, errors, f"{os.path.relpath(path, ROOT)}:{number}")


def main(argv):
    book_dir = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(ROOT, "docs", "book"))
    markdown = argv[2:] or [os.path.join(ROOT, "README.md")]
    errors = []
    pages = check_book(book_dir, errors)
    for path in markdown:
        check_markdown(path, book_dir, errors)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"{len(errors)} broken link(s)", file=sys.stderr)
        return 1
    print(f"book links: {pages} pages and {len(markdown)} markdown file(s), every link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
