"""Browsing through HTTP (Flask test client): folders, files, previews, history, search."""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import quote

import pytest

from tests.panel.conftest import XSS_NAME, World, csrf_of, login, make_app


def text(resp) -> str:
    assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True)[:500])
    return resp.get_data(as_text=True)


def test_root_lists_real_names_sizes_and_dates(alice, world: World) -> None:
    page = text(alice.get("/s/alice/docs/tree/"))
    for name in ("letters/", "code/", "empty/", "notes.md", "photo.png", ".git/", "run.sh"):
        assert f">{html.escape(name)}<" in page, name
    assert "%%" not in page  # the escaped git name (%%%2Egit) never shows
    assert html.escape("résumé 100%.txt") in page
    assert "old-draft.txt" not in page  # deleted in a later snapshot
    # Sizes and dates come from the manifest.
    assert "17 bytes" in page  # notes.md is "# Notes\n\n* first\n"
    day = (world.now - timedelta(days=20)).astimezone().strftime("%Y-%m-%d")
    assert day in page


def test_escaped_folder_is_browsed_under_its_real_name(alice) -> None:
    page = text(alice.get("/s/alice/docs/blob/.git/config"))
    assert "fsmonitor" in page
    assert "%%" not in page


def test_folder_as_of_last_week_and_breadcrumbs(alice, world: World) -> None:
    last_week = (world.now - timedelta(days=7)).astimezone().strftime("%Y-%m-%d")
    page = text(alice.get(f"/s/alice/docs/tree/letters?at={last_week}"))
    assert 'aria-label="Breadcrumb"' in page and ">docs</a>" in page
    assert world.commits["last_week"][:10] in page
    blob = text(alice.get(f"/s/alice/docs/blob/letters/to-grandma.txt?at={last_week}"))
    assert "version two (last week)" in blob
    today = text(alice.get("/s/alice/docs/blob/letters/to-grandma.txt"))
    assert "version four (today)" in today
    # Before the first snapshot there is nothing, and the page says so.
    early = (world.now - timedelta(days=60)).astimezone().strftime("%Y-%m-%d")
    resp = alice.get(f"/s/alice/docs/tree/?at={early}")
    assert resp.status_code == 404 and "no snapshot at or before" in resp.get_data(as_text=True)


def test_text_is_highlighted_and_images_and_pdf_are_previewed(alice) -> None:
    page = text(alice.get("/s/alice/docs/blob/code/hello.py"))
    assert 'class="hl"' in page and '<span class="k">def</span>' in page
    image = text(alice.get("/s/alice/docs/blob/photo.png"))
    assert '<img class="image" src="/s/alice/docs/preview/photo.png?at=' in image
    png = alice.get("/s/alice/docs/preview/photo.png")
    assert png.headers["Content-Type"] == "image/png" and png.data.startswith(b"\x89PNG")
    pdf_page = text(alice.get("/s/alice/docs/blob/report.pdf"))
    assert 'class="render pdf"' in pdf_page
    pdf = alice.get("/s/alice/docs/preview/report.pdf")
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert "frame-ancestors 'self'" in pdf.headers["Content-Security-Policy"]


def test_raw_download_is_an_attachment_with_the_exact_bytes(alice, world: World) -> None:
    resp = alice.get("/s/alice/docs/raw/run.sh")
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.data == (world.live["alice/docs"] / "run.sh").read_bytes()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    name = quote("résumé 100%.txt")
    resp = alice.get(f"/s/alice/docs/raw/{name}")
    assert resp.data == b"accents and a percent sign\n"
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20100%25.txt" in resp.headers["Content-Disposition"]


def test_symlink_is_shown_as_a_link(alice) -> None:
    page = text(alice.get("/s/alice/docs/blob/link"))
    assert "symbolic link to <code>notes.md</code>" in page


def test_file_history_lists_the_snapshots_that_changed_it_with_diffs(alice, world: World) -> None:
    page = text(alice.get("/s/alice/docs/history/letters/to-grandma.txt"))
    for label in ("first", "last_week", "recent", "today"):
        assert world.commits[label] in page, label
    assert page.count(">Diff</a>") == 3 and "Added" in page
    notes = text(alice.get("/s/alice/docs/history/notes.md"))
    linked = {c for c in world.commits.values() if f"/commit/{c}" in notes}
    assert linked == {world.commits["first"]}
    diff = text(
        alice.get(f"/s/alice/docs/diff/letters/to-grandma.txt?at={world.commits['recent']}")
    )
    assert "-version two (last week)" in diff and "+version three" in diff


def test_folder_history_and_snapshot_page(alice, world: World) -> None:
    page = text(alice.get("/s/alice/docs/history/code"))
    linked = {c for c in world.commits.values() if f"/commit/{c}" in page}
    assert linked == {world.commits["first"]}
    whole = text(alice.get("/s/alice/docs/history/"))
    assert all(c in whole for k, c in world.commits.items() if not k.startswith("bob"))
    commit = text(alice.get(f"/s/alice/docs/commit/{world.commits['recent']}"))
    assert "old-draft.txt" in commit and "deleted" in commit


def test_search_by_name_across_history_finds_deleted_files(alice, world: World) -> None:
    page = text(alice.get("/s/alice/docs/search?q=DRAFT"))
    assert "old-draft.txt" in page and "deleted" in page
    assert f"at={world.commits['last_week']}" in page  # links to the last version it had
    assert "to-grandma" not in page
    found = text(alice.get("/s/alice/docs/blob/old-draft.txt?at=" + world.commits["last_week"]))
    assert "to be deleted" in found


def test_file_named_like_html_is_shown_as_text(alice) -> None:
    page = text(alice.get("/s/alice/docs/tree/"))
    assert "<img src=x onerror" not in page
    assert html.escape(XSS_NAME) in page
    blob = text(alice.get("/s/alice/docs/blob/" + quote(XSS_NAME)))
    assert "<img src=x onerror" not in blob and "harmless text" in blob


def test_html_is_previewed_only_in_a_sandbox_and_downloaded_as_attachment(alice) -> None:
    page = text(alice.get("/s/alice/docs/blob/page.html"))
    # The file view shows the source, escaped, and frames the render with sandbox="".
    assert "&lt;script&gt;" in page or "<span" in page
    assert "<script>document.title" not in page
    assert '<iframe class="render" sandbox=""' in page
    preview = alice.get("/s/alice/docs/preview/page.html")
    csp = preview.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp
    assert "script-src" not in csp
    assert preview.headers["X-Content-Type-Options"] == "nosniff"
    raw = alice.get("/s/alice/docs/raw/page.html")
    assert raw.headers["Content-Disposition"].startswith("attachment;")
    assert raw.headers["Content-Security-Policy"].startswith("sandbox;")


def test_security_headers_on_every_response(alice, cloud_app) -> None:
    anonymous = cloud_app.test_client()
    responses = [
        alice.get("/"),
        alice.get("/s/alice/docs/tree/"),
        alice.get("/s/alice/docs/raw/notes.md"),
        alice.get("/s/alice/docs/tree/nope"),
        anonymous.get("/login"),
        anonymous.get("/static/style.css"),
    ]
    for resp in responses:
        h = resp.headers
        assert "frame-ancestors" in h["Content-Security-Policy"], resp.request.path
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
        directives = dict(
            [*d.strip().split(" ", 1), ""][:2] for d in h["Content-Security-Policy"].split(";")
        )
        assert "unsafe" not in directives.get("script-src", "")
    assert "frame-ancestors 'none'" in responses[0].headers["Content-Security-Policy"]


PATH_VIEWS = ["tree", "blob", "raw", "preview", "history", "diff", "archive", "restore"]
BAD_PATHS = [
    "../bob/photos",
    "letters/../../../etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "letters/%2E%2E/notes.md",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "letters/./to-grandma.txt",
    "notes.md%00.txt",
    "letters//to-grandma.txt",
]


@pytest.mark.parametrize("view", PATH_VIEWS)
def test_path_traversal_is_refused_in_every_path_parameter(alice, view: str) -> None:
    for bad in BAD_PATHS:
        resp = alice.get(f"/s/alice/docs/{view}/{bad}")
        # A leading "/" does not even match the route (404); everything else reaches the
        # path check and is refused by it (400). Never a 200, a redirect, or a file.
        expected = {400, 404} if bad.lower().startswith(("/", "%2f")) else {400}
        assert resp.status_code in expected, (view, bad, resp.status_code)
        assert b"root:" not in resp.data and b"Grandma" not in resp.data


def test_names_in_the_url_are_checked_too(alice) -> None:
    for url in (
        "/s/../docs/tree/",
        "/s/alice/..%2Fbob/tree/",
        "/s/ALICE/docs/tree/",
        "/s/alice/docs/commit/..%2F..%2Fconfig",
        "/jobs/..%2F..%2Fetc",
    ):
        assert alice.get(url).status_code in (400, 404), url


def test_another_users_segment_is_not_found(client_for, world: World) -> None:
    bob = client_for("bob")
    assert "bob/photos" in text(bob.get("/s/")) and "alice/docs" not in text(bob.get("/s/"))
    commit = world.commits["today"]
    urls = [f"/s/alice/docs/{v}/notes.md" for v in PATH_VIEWS] + [
        "/s/alice/docs/tree/",
        "/s/alice/docs/search?q=notes",
        f"/s/alice/docs/commit/{commit}",
    ]
    for url in urls:
        resp = bob.get(url)
        assert resp.status_code == 404, (url, resp.status_code)
        assert b"Grandma" not in resp.data
    token = csrf_of(bob, "/")
    resp = bob.post("/s/alice/docs/restore/notes.md", data={"csrf_token": token, "target": "live"})
    assert resp.status_code == 404
    resp = bob.post(
        "/jobs", data={"csrf_token": token, "kind": "commit", "user": "alice", "segment": "docs"}
    )
    assert resp.status_code == 404
    assert text(bob.get("/s/bob/photos/tree/")).count("img") >= 2
    assert bob.get("/admin/users").status_code == 403


def test_a_big_folder_is_paged(world: World) -> None:
    from bluegrass.core.store import Repository, snapshot

    live = world.root / "files" / "alice" / "big"
    (live / "many").mkdir(parents=True)
    for i in range(2500):
        (live / "many" / f"f{i:05d}.txt").write_text(str(i))
    snapshot(Repository.init(world.root / "repos" / "alice" / "big.git"), live)
    client = make_app(world).test_client()
    login(client, "alice")
    first = text(client.get("/s/alice/big/tree/many"))
    assert "2500 entries, page 1 of 3" in first and "f00999.txt" in first
    assert "f01000.txt" not in first
    third = text(client.get("/s/alice/big/tree/many?page=3"))
    assert "f02499.txt" in third and "f00000.txt" not in third
