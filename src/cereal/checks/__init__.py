"""Checks and normal forms of what users pass, internal to cereal.

Names, durations and aware UTC times, five-field cron expressions and the
checks shared by the :class:`cereal.Manager` and ``cereal serve`` (one set of
rules for both, so a value refused by one is refused by the other).
"""
