"""Split a kit's secrets K-of-N into SLIP-39 word shares, and combine them back.

Each secret is shared on its own (one SLIP-39 set per secret, or per 32-byte part of a long
one): sheet i carries member i of every set, so any K sheets give back every secret and fewer
give nothing (Shamir's scheme leaks nothing below the threshold). The master secrets stay
within 16–32 bytes of even length, the sizes every SLIP-39 implementation reads, so that the
reference tool (`shamir recover` of the `shamir-mnemonic` package) combines them without
Bluegrass. What turns a recovered master secret (hex) back into the secret's text is said by
its kind:

  base64url  the text is unpadded URL-safe base64 of 16–32 bytes (the replica's passwords:
             secrets.token_urlsafe(32)); the set holds those bytes, 33 words
  text       any other text (an S3 secret key): its UTF-8 bytes cut in parts of at most 32
             bytes, the last one padded with NUL bytes to an even length of at least 16

No passphrase is used: the sheets themselves are what is kept apart.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from bluegrass.core.errors import BluegrassError
from shamir_mnemonic import MnemonicError, combine_mnemonics, generate_mnemonics
from shamir_mnemonic.share import Share

MAX_SHARES = 16  # SLIP-39's limit on the members of a group
MAX_PART = 32
MIN_PART = 16

BASE64URL = "base64url"
TEXT = "text"


class SplitError(BluegrassError):
    """A split that cannot be made, or shares that do not combine."""


@dataclass(frozen=True)
class Scheme:
    """K of N: N sheets, any K of them open the secrets."""

    threshold: int
    count: int

    def __str__(self) -> str:
        return f"{self.threshold}-of-{self.count}"


@dataclass(frozen=True)
class SecretShare:
    """One sheet's words for one secret (or one part of a long secret)."""

    label: str  # the secret's name on the kit, e.g. "password"
    part: int  # 1-based; a secret longer than 32 bytes has several
    parts: int
    kind: str  # BASE64URL or TEXT: how the recovered hex becomes the text
    words: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.label if self.parts == 1 else f"{self.label} (part {self.part} of {self.parts})"


@dataclass(frozen=True)
class Sheet:
    """What one trusted person gets: member `index` of every set."""

    index: int  # 1-based
    scheme: Scheme
    shares: tuple[SecretShare, ...]


_SCHEME = re.compile(r"([0-9]{1,3})-of-([0-9]{1,3})")


def parse_scheme(text: str) -> Scheme:
    """`2-of-3` → Scheme(2, 3); anything else is a SplitError naming what is expected."""
    found = _SCHEME.fullmatch(text.strip())
    expected = "expected K-of-N, e.g. 2-of-3, with 2 <= K <= N <= 16"
    if not found:
        raise SplitError(f"--split {text!r}: {expected}")
    k, n = int(found.group(1)), int(found.group(2))
    if n > MAX_SHARES:
        raise SplitError(
            f"--split {text}: at most {MAX_SHARES} sheets (SLIP-39's limit); {expected}"
        )
    if k > n:
        raise SplitError(f"--split {text}: needs {k} sheets but makes only {n}; {expected}")
    if k < 2:
        # One sheet that opens everything is the plain kit: no split at all.
        raise SplitError(f"--split {text}: one sheet alone would open everything; {expected}")
    return Scheme(k, n)


def _as_base64url(text: str) -> bytes | None:
    """The bytes `text` is the canonical unpadded base64url of, when 16–32 and even."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if not MIN_PART <= len(raw) <= MAX_PART or len(raw) % 2:
        return None
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
        return None  # not canonical: decoding would not give the same text back
    return raw


def encode(text: str) -> tuple[str, list[bytes]]:
    """The kind and the master secrets (16–32 bytes, even) that carry `text`."""
    raw = _as_base64url(text)
    if raw is not None:
        return BASE64URL, [raw]
    data = text.encode("utf-8")
    if not data or b"\0" in data:
        raise SplitError("a secret to split must be non-empty text without NUL characters")
    parts = [data[i : i + MAX_PART] for i in range(0, len(data), MAX_PART)]
    last = parts[-1]
    size = max(MIN_PART, len(last) + len(last) % 2)
    parts[-1] = last + b"\0" * (size - len(last))
    return TEXT, parts


def decode(kind: str, parts: list[bytes]) -> str:
    """The text back from its recovered master secrets (what the sheets' command does)."""
    if kind == BASE64URL:
        return base64.urlsafe_b64encode(parts[0]).decode().rstrip("=")
    return b"".join(parts).rstrip(b"\0").decode("utf-8")


def split(secrets: dict[str, str], scheme: Scheme) -> list[Sheet]:
    """One sheet per person; `secrets` maps each secret's name on the kit to its text."""
    if not secrets:
        raise SplitError("nothing to split: the kit has no secrets")
    per_sheet: list[list[SecretShare]] = [[] for _ in range(scheme.count)]
    for label, text in secrets.items():
        kind, parts = encode(text)
        for number, master in enumerate(parts, start=1):
            # iteration_exponent 0: the reference CLI's own default, and no passphrase to
            # stretch; extendable False keeps the words readable by older tools (0.2.x).
            groups = generate_mnemonics(
                1,
                [(scheme.threshold, scheme.count)],
                master,
                extendable=False,
                iteration_exponent=0,
            )
            for index, mnemonic in enumerate(groups[0]):
                per_sheet[index].append(
                    SecretShare(label, number, len(parts), kind, tuple(mnemonic.split()))
                )
    return [Sheet(index + 1, scheme, tuple(shares)) for index, shares in enumerate(per_sheet)]


def recover(shares: list[SecretShare]) -> dict[str, str]:
    """The secrets back from the shares of K (or more) sheets, in any order.

    Shares of one secret's part are combined together; too few, or words that do not belong
    together, is a SplitError naming the secret."""
    by_part: dict[tuple[str, int], list[SecretShare]] = {}
    for share in shares:
        by_part.setdefault((share.label, share.part), []).append(share)
    found: dict[str, tuple[str, int, dict[int, bytes]]] = {}
    for (label, part), group in by_part.items():
        name = group[0].name
        try:
            parsed = [Share.from_mnemonic(" ".join(s.words)) for s in group]
        except MnemonicError as exc:
            raise SplitError(f"{name}: not a share's words (mistyped?): {exc}") from None
        need, have = parsed[0].member_threshold, len({p.index for p in parsed})
        if have < need:
            raise SplitError(
                f"{name}: the words do not combine: needs the words of {need} different "
                f"sheets, got {have}"
            )
        try:
            master = combine_mnemonics([" ".join(s.words) for s in group])
        except MnemonicError as exc:
            raise SplitError(f"{name}: the words do not combine: {exc}") from None
        kind, parts, got = found.setdefault(label, (group[0].kind, group[0].parts, {}))
        got[part] = master
    result: dict[str, str] = {}
    for label, (kind, parts, got) in found.items():
        missing = [str(p) for p in range(1, parts + 1) if p not in got]
        if missing:
            raise SplitError(f"{label}: part {', '.join(missing)} of {parts} is missing")
        result[label] = decode(kind, [got[p] for p in range(1, parts + 1)])
    return result


_HEADER = re.compile(
    r"^\s*(?P<label>[A-Za-z0-9][A-Za-z0-9 ._-]*) \[(?P<kind>base64url|text) "
    r"(?P<part>[0-9]{1,2})/(?P<parts>[0-9]{1,2})\]:\s*$"
)
_WORDS = re.compile(r"^\s*[a-z]+(\s+[a-z]+)*\s*$")
WORDS_PER_LINE = 10


def share_lines(share: SecretShare) -> list[str]:
    """How a share is printed: a header naming it, then its words, 10 to a line. The same
    text, typed back or taken from the PDF with pdftotext, is what parse_shares reads."""
    header = f"{share.label} [{share.kind} {share.part}/{share.parts}]:"
    rows = [
        " ".join(share.words[i : i + WORDS_PER_LINE])
        for i in range(0, len(share.words), WORDS_PER_LINE)
    ]
    return [header, *rows]


def parse_shares(text: str) -> list[SecretShare]:
    """Every share printed in `text` (one or more sheets' text, in any order)."""
    found: list[SecretShare] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        head = _HEADER.match(lines[i])
        i += 1
        if not head:
            continue
        words: list[str] = []
        while i < len(lines) and _WORDS.match(lines[i]):
            words.extend(lines[i].split())
            i += 1
        part, parts = int(head.group("part")), int(head.group("parts"))
        if not words or not 1 <= part <= parts:
            raise SplitError(f"{lines[i - 1].strip()!r}: a share's header without its words")
        found.append(
            SecretShare(head.group("label").strip(), part, parts, head.group("kind"), tuple(words))
        )
    if not found:
        raise SplitError(
            "no share found: expected lines like 'password [base64url 1/1]:' "
            "followed by that share's words"
        )
    return found
