"""`netopt assess`: a consultant's timed campaign from a customer site to a report.

campaign → analysis → report (model, HTML, Markdown, JSON) → upload/compare; see cli.py.
"""
