"""Trainer agent: a faust consumer of a job's data partitions that turns them into gradients.

``Trainer`` (worker.py) joins the job's consumer group through a faust App (app.py), keeps the rows
of its partitions (data.py), follows the parameter topic (follower.py) and runs the loop of the
job's sync mode (loops.py) with torch work in a thread (compute.py).
"""
