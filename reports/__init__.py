"""What drift and performance reports share: Evidently's HTML, the workspace of runs over time and its dashboard.

``drift`` and ``performance`` build their own reports over it and never import each other.
"""
