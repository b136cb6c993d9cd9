"""What every Bluegrass role shares: configuration, segments, the rclone runner, the git store."""
