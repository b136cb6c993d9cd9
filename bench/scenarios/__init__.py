"""One module per scenario; each has `run(ctx) -> list[Row]` and may have `targets(ctx, rows)`."""
