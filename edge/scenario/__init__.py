"""Scenario generator: real test faces walking across a boulevard, with ground truth.

``edge scenario`` writes a video and a ground-truth JSON; the same JSON re-renders
the identical frames in memory (:func:`edge.scenario.render.scenario_source`), so
tests and benchmarks can skip the video codec. See :mod:`.catalogue` for who is who.
"""
