"""Accountability: alert evidence and its retention, the adjudication loop, the false-alert
monitor, public transparency figures, the publishable report and threshold governance.

Each module is small and takes time as ``now``; the runner wires them (see each
module's docstring for the call it expects). Nothing here holds a template, and
the only image it holds is an alert's crop, in ``evidence``.
"""
