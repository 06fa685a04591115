"""Autoscaler: watches the inference group's lag and arrival rate, runs local worker processes.

``policy`` decides (pure), ``lag`` measures, ``replicas`` starts and stops processes,
``controller`` ties them into a loop (``aiaas autoscale``).
"""
