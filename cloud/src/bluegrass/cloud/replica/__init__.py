"""The cloud's histories replicated to S3, encrypted per user, and a cloud rebuilt from them.

Layout in the bucket (docs/replica.md): `server/` (the administrator's crypt remote: the
server's own state and its manifests) and one `u-<random>/` per user (that user's crypt
remote: per segment, git bundles and the refs after each; the user's manifests). Everything
is uploaded under new keys only, never overwritten or deleted, and a manifest (every object
with its sha256) is written last, so a half-finished upload is never taken for a complete
one.

settings   [replica] as a dataclass, the S3 secret read from its file
keys       per-user crypt secrets and the administrator's, made once, owner-only
remote     rclone over env-var remotes: list, upload (--immutable), download, probe
manifest   the manifests' format and object names
bundles    git bundle create / verify / fetch
replicate  uploading what is new
serverstate the server's own state (database copy, host key, web key, users' secrets)
rebuild    filling an empty data root from the replica (staging shared with fromdrive)
fromdrive  filling an empty data root from a Pi's drive
status     the replica's last upload and problems, for the dashboard and /health
check      downloading and checking what is there, and the delete probe
"""
