"""What goes on the wire: probers and their statistics (probe → sample → stats).

Knows nothing of regions, routes or config files; never imports `netopt` or `topology`.
"""
