"""Deployment bindings: what any platform calls to deploy a profile, with no platform imported.

This room sits above the profiles, one job a module: `settings` (a deployment resolved from the
profile and the environment, with `env_vars`, `defaults`, `drain` and `dummy_weights`),
`download` and `verify` (the steps before serving), `lifecycle` (the serving container's hooks),
`ranks` (one node of a cluster), and the profile command line (`commands`, `serve_command`,
`profile_flags`, `profile_command`). Platform modules (`modal_entry.py`) import from here and
pass platform hooks in as plain callables.
"""
