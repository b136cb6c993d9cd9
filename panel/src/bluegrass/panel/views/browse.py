"""Browsing a segment's history: folders, files, previews, history, search, downloads, restore.

URLs carry the user's real path, percent-encoded: /s/<user>/<segment>/<view>/<path>?at=…
where `at` is a commit id or a date ("as of"). helpers.request_path checks every path before
anything uses it; the path is then only a key into the snapshot's manifest, and reaches git
as files/<escaped path> with literal pathspecs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from bluegrass.core.store import Repository, RepositoryError, browse
from bluegrass.core.store.manifest import ROOT, Entry
from bluegrass.panel import archive, preview
from bluegrass.panel.backend import BackendError, EmergencyAccess, NotFound
from bluegrass.panel.helpers import (
    account,
    backend,
    check_names,
    download_name,
    login_required,
    request_path,
    seg_url,
)
from flask import Blueprint, abort, flash, redirect, render_template, request
from werkzeug.wrappers import Response

bp = Blueprint("browse", __name__)

PAGE = 1000  # folder entries per page
HISTORY_PAGE = 200
_COMMIT = re.compile(r"[0-9a-f]{40}")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")

# The policy for user content sent inline: no script, an opaque origin (so no cookies,
# no storage, no requests as the signed-in user), only our own pages may frame it.
SANDBOX_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
# Chrome's and Firefox's PDF viewers do not run inside a CSP sandbox; a PDF's own scripts
# run in the viewer's sandbox, never with this origin.
PDF_CSP = "default-src 'none'; frame-ancestors 'self'"


@dataclass
class Place:
    user: str
    segment: str
    repo: Repository
    snap: browse.SnapshotInfo
    index: browse.Index
    path: bytes
    at_given: str | None

    def url(self, view: str, path: bytes | None = None, **query: object) -> str:
        target = self.path if path is None else path
        return seg_url(view, self.user, self.segment, target, at=self.snap.commit, **query)

    @property
    def is_root(self) -> bool:
        return self.path == ROOT

    @property
    def title(self) -> str:
        return self.segment if self.is_root else self.path.decode("utf-8", "replace")

    @property
    def crumbs(self) -> list[tuple[str, bytes]]:
        out = [(self.segment, ROOT)]
        if self.path != ROOT:
            parts = self.path.split(b"/")
            for i in range(len(parts)):
                out.append((parts[i].decode("utf-8", "replace"), b"/".join(parts[: i + 1])))
        return out


def open_repo(user: str, segment: str) -> Repository:
    check_names(user, segment)
    try:
        return backend().repository(account(), user, segment)
    except NotFound:
        abort(404, description="No such segment, or not yours to see.")


def locate(user: str, segment: str, skip: int = 5) -> Place:
    path = request_path(skip)
    repo = open_repo(user, segment)
    at = request.args.get("at") or None
    if at is not None and len(at) > 64:
        abort(400)
    try:
        snap = browse.resolve(repo, at)
        idx = browse.index(repo, snap)
    except RepositoryError as exc:
        abort(404, description=str(exc))
    return Place(user, segment, repo, snap, idx, path, at)


def entry_or_404(place: Place) -> Entry:
    entry = place.index.entries.get(place.path)
    if entry is None:
        abort(
            404,
            description=f"{place.path.decode('utf-8', 'replace')} is not in the snapshot of "
            f"{place.snap.date:%Y-%m-%d %H:%M}. Its history or a search may find it.",
        )
    return entry


# What the plain `filename=` cannot carry: controls (a CR or LF would end the header; servers
# refuse to send one, which was a 500), DEL, and the quote and backslash of its quoting.
_NOT_IN_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\]')


def content_disposition(kind: str, name: bytes) -> str:
    """The header for a download of `name`: an ASCII `filename` with `_` for what it cannot
    hold and `?` for the rest, and the exact name, percent-encoded, in `filename*` (RFC 6266),
    which every current browser prefers. Neither can hold a raw control character."""
    text = download_name(name)
    ascii_name = _NOT_IN_FILENAME.sub("_", text.encode("ascii", "replace").decode())
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(text, safe='')}"


@bp.route("/s/")
@login_required
def segments() -> str:
    return render_template("segments.html", segments=backend().segments(account()))


@bp.route("/s/<user>/<segment>/")
@login_required
def segment_home(user: str, segment: str) -> Response:
    check_names(user, segment)
    return redirect(seg_url("tree", user, segment))


@bp.route("/s/<user>/<segment>/tree/", defaults={"subpath": ""})
@bp.route("/s/<user>/<segment>/tree/<path:subpath>")
@login_required
def tree(user: str, segment: str, subpath: str) -> Response | str:
    place = locate(user, segment)
    entry = entry_or_404(place)
    if entry.kind != "d":
        return redirect(place.url("blob"))
    children = place.index.children.get(place.path, [])
    page = max(1, request.args.get("page", 1, type=int) or 1)
    pages = max(1, -(-len(children) // PAGE))
    shown = children[(page - 1) * PAGE : page * PAGE]
    rows = [(child, place.index.entries[child]) for child in shown]
    return render_template(
        "tree.html",
        place=place,
        rows=rows,
        total=len(children),
        page=min(page, pages),
        pages=pages,
        recent=browse.recent(place.repo, 30),
    )


@bp.route("/s/<user>/<segment>/blob/<path:subpath>")
@login_required
def blob(user: str, segment: str, subpath: str) -> Response | str:
    place = locate(user, segment)
    entry = entry_or_404(place)
    if entry.kind == "d":
        return redirect(place.url("tree"))
    name = browse.name_of(place.path)
    shown_name = name.decode("utf-8", "replace")
    kind = None
    content = None
    truncated = False
    link_target = None
    if entry.kind == "l":
        link_target = place.repo.read_blob(entry.oid or "").decode("utf-8", "replace")
    else:
        head = browse.read_head(place.repo, entry.oid or "", preview.SNIFF)
        kind = preview.classify(shown_name, entry.size, head)
        if kind.kind == "text":
            data = head
            if entry.size > len(head):
                data = browse.read_head(place.repo, entry.oid or "", preview.TEXT_LIMIT)
            truncated = entry.size > len(data)
            content = preview.highlighted(shown_name, data)
    return render_template(
        "blob.html",
        place=place,
        entry=entry,
        kind=kind,
        content=content,
        truncated=truncated,
        link_target=link_target,
        name=name,
    )


def _send_blob(place: Place, entry: Entry, disposition: str, content_type: str) -> Response:
    repo, oid = place.repo, entry.oid or ""
    resp = Response(
        browse.stream_blob(repo, oid),
        content_type=content_type,
        direct_passthrough=True,
    )
    resp.headers["Content-Length"] = str(entry.size)
    resp.headers["Content-Disposition"] = content_disposition(
        disposition, browse.name_of(place.path)
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["ETag"] = f'"{oid}"'
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


@bp.route("/s/<user>/<segment>/raw/<path:subpath>")
@login_required
def raw(user: str, segment: str, subpath: str) -> Response:
    """The file's bytes as a download: never rendered, whatever its type."""
    place = locate(user, segment)
    entry = entry_or_404(place)
    if entry.kind == "d":
        return redirect(place.url("archive", format="zip"))
    content_type = (
        "text/plain; charset=utf-8"
        if entry.kind == "l"
        else preview.download_type(browse.name_of(place.path).decode("utf-8", "replace"))
    )
    resp = _send_blob(place, entry, "attachment", content_type)
    resp.headers["Content-Security-Policy"] = SANDBOX_CSP
    return resp


@bp.route("/s/<user>/<segment>/preview/<path:subpath>")
@login_required
def preview_file(user: str, segment: str, subpath: str) -> Response:
    """The file inline, for <img>, <iframe> and "open": only allow-listed types, sandboxed."""
    place = locate(user, segment)
    entry = entry_or_404(place)
    if entry.kind != "f":
        abort(404)
    name = browse.name_of(place.path).decode("utf-8", "replace")
    head = browse.read_head(place.repo, entry.oid or "", preview.SNIFF)
    kind = preview.classify(name, entry.size, head)
    if kind.inline_type is None:
        return redirect(place.url("raw"))
    resp = _send_blob(place, entry, "inline", kind.inline_type)
    resp.headers["Content-Security-Policy"] = PDF_CSP if kind.kind == "pdf" else SANDBOX_CSP
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return resp


@bp.route("/s/<user>/<segment>/history/", defaults={"subpath": ""})
@bp.route("/s/<user>/<segment>/history/<path:subpath>")
@login_required
def history(user: str, segment: str, subpath: str) -> str:
    place = locate(user, segment)
    skip = max(0, request.args.get("skip", 0, type=int) or 0)
    items = browse.history(
        place.repo, place.path, until=place.snap.commit, limit=HISTORY_PAGE + 1, skip=skip
    )
    more = len(items) > HISTORY_PAGE
    entry = place.index.entries.get(place.path)
    is_folder = place.path == ROOT or (entry is not None and entry.kind == "d")
    if entry is None and items:
        # Deleted by now: whether it was a folder shows in what its commits touched.
        is_folder = not any(c.path == place.path for c in items[0].changes)
    return render_template(
        "history.html",
        place=place,
        items=items[:HISTORY_PAGE],
        more=more,
        skip=skip,
        page_size=HISTORY_PAGE,
        is_folder=is_folder,
    )


@bp.route("/s/<user>/<segment>/diff/<path:subpath>")
@login_required
def diff(user: str, segment: str, subpath: str) -> str:
    """What one snapshot changed in one file: its text diff against the previous one."""
    place = locate(user, segment)
    new = place.index.entries.get(place.path)
    old = None
    if place.snap.parent is not None:
        before = browse.snapshot_info(place.repo, place.snap.parent)
        old = browse.index(place.repo, before).entries.get(place.path)
    if (old is None or old.kind == "d") and (new is None or new.kind == "d"):
        abort(404, description="This snapshot did not change that file.")
    old_oid = old.oid if old is not None and old.kind != "d" else None
    new_oid = new.oid if new is not None and new.kind != "d" else None
    text = browse.text_diff(place.repo, old_oid, new_oid) if old_oid != new_oid else ""
    return render_template("diff.html", place=place, old=old, new=new, text=text)


@bp.route("/s/<user>/<segment>/commit/<commit>")
@login_required
def commit(user: str, segment: str, commit: str) -> str:
    if not _COMMIT.fullmatch(commit):
        abort(404)
    repo = open_repo(user, segment)
    try:
        snap = browse.resolve(repo, commit)
        changes, cut = browse.changes(repo, snap.commit)
    except RepositoryError as exc:
        abort(404, description=str(exc))
    return render_template(
        "commit.html",
        user=user,
        segment=segment,
        snap=snap,
        changes=changes,
        cut=cut,
    )


@bp.route("/s/<user>/<segment>/search")
@login_required
def search(user: str, segment: str) -> str:
    repo = open_repo(user, segment)
    query = request.args.get("q", "").strip()[:200]
    results = browse.search(repo, query) if query else []
    return render_template("search.html", user=user, segment=segment, query=query, results=results)


@bp.route("/s/<user>/<segment>/archive/", defaults={"subpath": ""})
@bp.route("/s/<user>/<segment>/archive/<path:subpath>")
@login_required
def download_archive(user: str, segment: str, subpath: str) -> Response:
    """A folder, a file or the whole segment at a snapshot, as a streamed zip or tar.gz."""
    place = locate(user, segment)
    entry_or_404(place)
    fmt = request.args.get("format", "zip")
    if fmt not in archive.FORMATS:
        abort(400, description="The format is zip or tar.gz.")
    chosen = browse.select(place.index, place.path)
    top = segment.encode() if place.path == ROOT else browse.name_of(place.path)
    stamp = place.snap.date.strftime("%Y-%m-%d")
    filename = top + b"-" + stamp.encode() + b"." + fmt.encode()
    resp = Response(
        archive.stream(place.repo, chosen, place.path, top, fmt),
        content_type=archive.FORMATS[fmt],
        direct_passthrough=True,
    )
    resp.headers["Content-Disposition"] = content_disposition("attachment", filename)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "private, no-store"
    # Proxies (nginx) would otherwise buffer the whole archive before sending any of it.
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


@bp.route("/s/<user>/<segment>/restore/", defaults={"subpath": ""}, methods=["GET", "POST"])
@bp.route("/s/<user>/<segment>/restore/<path:subpath>", methods=["GET", "POST"])
@login_required
def restore(user: str, segment: str, subpath: str) -> Response | str | tuple[str, int]:
    place = locate(user, segment)
    entry = entry_or_404(place)
    targets = backend().restore_targets(account())
    error = None
    if request.method == "POST":
        target = request.form.get("target", "")
        folder = request.form.get("folder", "").strip() or None
        if target not in targets:
            error = "Choose where to restore to."
        elif target == "drive" and (folder is None or not _FOLDER_NAME.fullmatch(folder)):
            error = "Name the new folder on the drive: letters, digits, '.', '-', '_', space."
        else:
            try:
                message = backend().restore(
                    account(), user, segment, place.snap.commit, place.path, target, folder
                )  # type: ignore[arg-type]
            except NotFound:
                abort(404)
            except BackendError as exc:
                error = str(exc)
            else:
                flash(message)
                view = "tree" if entry.kind == "d" else "blob"
                return redirect(seg_url(view, user, segment, place.path))
    default_folder = (
        f"{segment}-{place.snap.date:%Y-%m-%d}"
        if place.path == ROOT
        else f"{browse.name_of(place.path).decode('utf-8', 'replace')[:60]}-"
        f"{place.snap.date:%Y-%m-%d}"
    )
    if not _FOLDER_NAME.fullmatch(default_folder):
        default_folder = f"{segment}-restored-{place.snap.date:%Y-%m-%d}"
    if error is None and isinstance(backend(), EmergencyAccess) and user != account().name:
        # Someone else's segment is only ever seen under emergency access, which is read-only
        # (decision 182): the page offers its downloads and no form the backend would refuse.
        # A form posted anyway still gets the backend's refusal, shown above the form.
        targets = []
    page = render_template(
        "restore.html",
        place=place,
        entry=entry,
        targets=targets,
        error=error,
        default_folder=default_folder,
    )
    return (page, 400) if error else page


@bp.errorhandler(BackendError)
def backend_error(exc: BackendError) -> tuple[str, int]:
    flash(str(exc), "error")
    return render_template("error.html", error=None, message=str(exc)), 400
