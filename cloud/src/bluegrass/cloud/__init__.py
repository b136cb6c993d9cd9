"""The cloud role: hosts users, receives their files, commits them daily, serves history."""
