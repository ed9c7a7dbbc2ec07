"""The studio behind `app.py`: runs and their cancel flags, the tab handlers, the history and the examples.

`app.py` only lays out widgets and wires them to a `Studio` (`pipelines.studio.handlers`); everything here can be
tested without a server.
"""
