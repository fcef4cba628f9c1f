"""The engine's moving parts, internal to cereal (import the public API from :mod:`cereal`).

The workflow runner (claim events, run a callback, apply its decision), the
task runner (claim tasks, run them, heartbeat, report), the schedule loop,
the sweeper, this process's worker presence, and the waits they share. The
:class:`cereal.Manager` builds and starts them; nothing here is imported by a
driver.
"""
