"""The attacks of the security review (docs/security.md), one file per channel.

Each test reproduces one finding against real processes on loopback, and each file runs alone:
`pytest tests/security/test_sftp.py`. Fixtures a file needs live in that file or in
tests/support/, so that no file depends on another's.
"""
