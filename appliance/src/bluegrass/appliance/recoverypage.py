"""RECOVERY.html: the drive's recovery steps as one page any browser opens from the drive.

Self-contained on purpose: inline style, no script, no image, no link to anything off the
drive, and a Content-Security-Policy that forbids them, so the page reads the same years from
now on a computer with no network. Every name on it comes from the drive's folders and is
escaped (html.escape, quotes too): a folder named like markup shows as text.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from bluegrass.core import recoverysteps

if TYPE_CHECKING:
    from bluegrass.appliance.readme import SegmentInfo

FILENAME = "RECOVERY.html"

STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .3rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { text-align: left; padding: .25rem .9rem .25rem 0; border-bottom: 1px solid #e5e5e5; }
pre { background: #f3f3f0; border: 1px solid #ddd; padding: .6rem .8rem; overflow-x: auto;
      white-space: pre; font: 14px/1.45 ui-monospace, monospace; }
code { font: 14px ui-monospace, monospace; }
td.when { white-space: nowrap; }
.note { color: #444; }
@media print { pre { white-space: pre-wrap; } }
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _e(text: str) -> str:
    return escape(text, quote=True)


def _segments_html(found: list[SegmentInfo]) -> list[str]:
    if not found:
        return [
            '<p class="note">Nothing yet: the Pi has not mirrored any folder to this drive.</p>'
        ]
    out: list[str] = []
    for user in dict.fromkeys(s.user for s in found):
        out.append(f'<h3>User <code class="user">{_e(user)}</code></h3>')
        out.append("<table><thead><tr><th>Folder</th><th>Latest snapshot</th>")
        out.append("<th>Snapshots</th><th>On the drive</th></tr></thead><tbody>")
        for seg in (s for s in found if s.user == user):
            path = f"bluegrass/{seg.user}/{seg.name}.git"
            out.append(
                f'<tr class="segment"><td class="name">{_e(seg.name)}</td>'
                f'<td class="when">{_e(seg.latest) if seg.latest else "none yet"}</td>'
                f"<td>{seg.count}</td><td><code>{_e(path)}</code></td></tr>"
            )
        out.append("</tbody></table>")
    return out


def render(found: list[SegmentInfo], label: str | None = None) -> str:
    steps = (recoverysteps.open_drive(label), *recoverysteps.drive_steps())
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Bluegrass backup drive: getting your files back</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Bluegrass backup drive</h1>",
        "<p>This drive holds backups made by Bluegrass. You need nothing but <b>git</b> to get "
        "your files back: no Bluegrass, no internet, no password. Any Linux computer reads this "
        "drive (it is ext4); on a Mac or Windows computer, start from a Linux USB stick.</p>",
        "<h2>What is on this drive</h2>",
        '<p class="note">Each backed-up folder is a git repository at '
        "<code>bluegrass/USER/FOLDER.git</code>, one commit per snapshot; the folder "
        "<code>bluegrass/USER/FOLDER/</code> beside it is a plain copy of the latest files.</p>",
        *_segments_html(found),
        "<h2>Get your files back</h2>",
        '<p class="note">Type each command in a terminal as shown, in order, in the same '
        "terminal window. Nothing on the drive is changed.</p>",
    ]
    for number, step in enumerate(steps, start=1):
        body.append(f'<section class="step"><h3>{number}. {_e(step.title)}</h3>')
        body.append(f"<p>{_e(step.words)}</p>")
        body += [f"<pre>{_e(command)}</pre>" for command in step.commands]
        body.append("</section>")
    body += [
        "<h2>With Bluegrass installed</h2>",
        "<pre>bluegrass-appliance restore SEGMENT [PATH] --at DATE --to NEWDIR</pre>",
        '<p class="note">README (the same in plain text) and repository-format.md (how '
        "the snapshots are stored) are beside this page. Do not change anything under "
        "<code>bluegrass/</code>: the Pi only ever adds to it.</p>",
        "</body></html>",
        "",
    ]
    return "\n".join(body)
