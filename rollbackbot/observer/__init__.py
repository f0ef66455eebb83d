"""The model observer: a reverse proxy in front of a model endpoint that scores a copy of the traffic.

``rollbackbot observer serve`` forwards every request at once (``proxy.py``), copies each exchange
into a bounded queue, and one scoring worker *process* (``worker.py``) parses it (``traffic.py``),
runs the versioned ruleset (``rules.py``, RE2: linear-time), redacts it (``redact.py``), keeps the
last requests for forensics and exports the ``model_observer_*`` metrics the alert rules read
(``exporter.py``). ``rollbackbot observer scan`` runs the same ruleset over JSON lines.
"""
