"""The laptop client: two-way sync of the user's chosen folders (segments) with the cloud."""
