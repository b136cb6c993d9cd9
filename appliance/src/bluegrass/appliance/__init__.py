"""The Raspberry Pi appliance: detects the backup drive, mirrors histories onto it."""
