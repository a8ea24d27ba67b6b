"""The leaderboard: submission files, their validation, and the static site built from them.

A submission is one JSON file under `leaderboard/submissions/<benchmark>/<entry>.json`:
either a reproduced entry (a full results file plus entry metadata, every number recomputed
from the raw accuracy matrices) or a claimed entry (summary numbers quoted from the
literature with their source, shown apart and never mixed with reproduced ones).
"""
