"""Deployment bindings: what any platform calls to deploy a profile, with no platform imported.

This room sits above the profiles: `lifecycle` (download, verify, the serving container's
hooks), `commands` (the profile-based command line: serve, demo, compile, preflight). Platform
modules (`modal_entry.py`) import from here and pass platform hooks in as plain callables.
"""
